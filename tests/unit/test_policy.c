/* test_policy.c — lib/policy.h on a real store: exact rolling windows and their Retry-After,
 * subjects, the send queue's order and spacing, pauses by kind and their bound, and that a
 * limit's cost does not grow with its size. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "policy.h"
#include "store.h"
#include "store_fixture.h"
#include "tmpdir.h"

struct fixture {
	char dir[64];
	char path[256];
	struct store *s;
	struct policy p;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-policy-test-XXXXXX");
	f->s = test_store_open_temp(f->dir, f->path, sizeof f->path);
	if (f->s == NULL) {
		free(f);
		return -1;
	}
	/* limits that stay out of the way unless a test sets them */
	f->p = (struct policy){ .per_chat = 1000, .chat_window_ms = 3600000, .per_ip = 0,
				.ip_window_ms = 60000, .key_window_ms = 60000,
				.sends_per_second = 10000,
				.send_wait_ms = 2000, .max_pause_ms = 3600000 };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->s);
	remove_dir(f->dir);
	free(f);
	return 0;
}

static enum policy_verdict admit(struct fixture *f, const char *chat, const char *ip, int64_t now,
				 struct policy_admission *a)
{
	struct policy_client client = { ip, NULL, 0 };

	assert_int_equal(policy_admit(&f->p, f->s, chat, &client, now, a), 0);
	return a->verdict;
}

static enum policy_verdict admit_key(struct fixture *f, const char *chat, const char *owner,
				     int key_limit, int64_t now, struct policy_admission *a)
{
	struct policy_client client = { "", owner, key_limit };

	assert_int_equal(policy_admit(&f->p, f->s, chat, &client, now, a), 0);
	return a->verdict;
}

/* ---- exact rolling windows -------------------------------------------------------------- */

static void chat_limit_refuses_with_retry_after_until_the_oldest_leaves(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.per_chat = 3;
	f->p.chat_window_ms = 60000;
	assert_int_equal(admit(f, "42", "", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 2000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 4000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.scope, POLICY_SCOPE_CHAT);
	assert_int_equal(a.retry_after_ms, 1000 + 60000 - 4000);
	/* one millisecond before the oldest leaves */
	assert_int_equal(admit(f, "42", "", 60999, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.retry_after_ms, 1);
	/* the event of t=1000 has left: a place is free */
	assert_int_equal(admit(f, "42", "", 61000, &a), POLICY_ADMITTED);
	/* full again (2000, 3000, 61000): the next place frees when 2000 leaves */
	assert_int_equal(admit(f, "42", "", 61000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.retry_after_ms, 2000 + 60000 - 61000);
	/* another chat is not affected */
	assert_int_equal(admit(f, "43", "", 61000, &a), POLICY_ADMITTED);
	/* long after: all gone, the whole limit is available again */
	assert_int_equal(admit(f, "42", "", 500000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 500000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 500000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "42", "", 500000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(store_rate_count(f->s, "chat", "42"), 3);
}

/* With beat_stale_ms set, otp-deleter's heartbeat is checked first, in the admission's write:
 * missing, stale or from the future is POLICY_DELETER_DOWN with nothing taken, even for a
 * chat at its limit. */
static void a_send_is_admitted_only_while_the_deleter_beats(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.beat_stale_ms = 10000;
	f->p.per_chat = 1;
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_DELETER_DOWN);
	assert_int_equal(a.beat_found, 0);
	assert_int_equal(store_heartbeat_set(f->s, POLICY_DELETER_NAME, 89999), 0);
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_DELETER_DOWN);
	assert_int_equal(a.beat_found, 1);
	assert_int_equal(a.beat_age_ms, 10001);
	assert_int_equal(store_heartbeat_set(f->s, POLICY_DELETER_NAME,
					     100000 + POLICY_BEAT_FUTURE_MS + 1), 0);
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_DELETER_DOWN);
	assert_int_equal(a.beat_age_ms, -POLICY_BEAT_FUTURE_MS - 1);
	assert_int_equal(store_rate_count(f->s, "chat", "7"), 0);
	assert_int_equal(store_heartbeat_set(f->s, POLICY_DELETER_NAME, 90000), 0);
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_ADMITTED);
	assert_int_equal(a.waits, 0); /* its turn is now: the pause it read stands */
	assert_int_equal(policy_rereads_pause(&a), 0);
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(store_heartbeat_set(f->s, POLICY_DELETER_NAME, 80000), 0);
	assert_int_equal(admit(f, "7", "", 100000, &a), POLICY_DELETER_DOWN);
}

static void ip_limit_is_checked_after_the_chat_and_a_refusal_takes_nothing(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.per_chat = 1;
	f->p.per_ip = 2;
	assert_int_equal(admit(f, "1", "10.0.0.1", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "2", "10.0.0.1", 2000, &a), POLICY_ADMITTED);
	/* chat 3 is free, the address is not */
	assert_int_equal(admit(f, "3", "10.0.0.1", 3000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.scope, POLICY_SCOPE_IP);
	assert_int_equal(a.retry_after_ms, 1000 + 60000 - 3000);
	assert_int_equal(store_rate_count(f->s, "chat", "3"), 0);
	/* both full: the chat is reported (checked first) */
	assert_int_equal(admit(f, "1", "10.0.0.1", 3000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.scope, POLICY_SCOPE_CHAT);
	/* another address, and no address at all, are free */
	assert_int_equal(admit(f, "3", "10.0.0.2", 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "4", "", 3000, &a), POLICY_ADMITTED);
	/* per_ip 0 turns the limit off */
	f->p.per_ip = 0;
	assert_int_equal(admit(f, "5", "10.0.0.1", 3000, &a), POLICY_ADMITTED);
}

static enum policy_verdict admit_revoke(struct fixture *f, const char *ip, int64_t now,
					struct policy_admission *a)
{
	struct policy_client client = { ip, "shop", 1 };

	assert_int_equal(policy_admit_revoke(&f->p, f->s, &client, now, a), 0);
	return a->verdict;
}

static void revokes_count_against_the_address_with_its_sends_and_nothing_else(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.per_chat = 1;
	f->p.per_key = 1;
	f->p.per_ip = 3;
	assert_int_equal(admit(f, "1", "10.0.0.1", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_revoke(f, "10.0.0.1", 2000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_revoke(f, "10.0.0.1", 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_revoke(f, "10.0.0.1", 4000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.scope, POLICY_SCOPE_IP);
	assert_int_equal(a.retry_after_ms, 1000 + 60000 - 4000);
	assert_int_equal(admit(f, "2", "10.0.0.1", 4000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(store_rate_count(f->s, "ip", "10.0.0.1"), 3);
	/* neither the chat's, nor the key's limit, nor the send queue is touched */
	assert_int_equal(store_rate_count(f->s, "key", "shop"), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "1"), 1);
	/* the oldest left: a place is free */
	assert_int_equal(admit_revoke(f, "10.0.0.1", 61000, &a), POLICY_ADMITTED);
	/* no address, or the limit off: nothing counted */
	assert_int_equal(admit_revoke(f, "", 61000, &a), POLICY_ADMITTED);
	f->p.per_ip = 0;
	assert_int_equal(admit_revoke(f, "10.0.0.1", 61000, &a), POLICY_ADMITTED);
	assert_int_equal(store_rate_count(f->s, "ip", "10.0.0.1"), 3);
}

static void key_limit_counts_per_owner_and_a_key_s_own_limit_wins(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.per_key = 2;
	assert_int_equal(admit_key(f, "1", "shop", 0, 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "2", "shop", 0, 2000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "3", "shop", 0, 3000, &a), POLICY_RATE_LIMITED);
	assert_int_equal(a.scope, POLICY_SCOPE_KEY);
	assert_int_equal(a.retry_after_ms, 1000 + 60000 - 3000);
	assert_int_equal(store_rate_count(f->s, "chat", "3"), 0);
	/* another key has a budget of its own; a key's own limit replaces the default */
	assert_int_equal(admit_key(f, "3", "forum", 0, 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "4", "admin", 3, 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "5", "admin", 3, 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "6", "admin", 3, 3000, &a), POLICY_ADMITTED);
	assert_int_equal(admit_key(f, "7", "admin", 3, 3000, &a), POLICY_RATE_LIMITED);
	/* no key (no keys configured), or the default off: no per-key limit */
	assert_int_equal(admit_key(f, "8", "", 0, 3000, &a), POLICY_ADMITTED);
	f->p.per_key = 0;
	assert_int_equal(admit_key(f, "9", "shop", 0, 3000, &a), POLICY_ADMITTED);
	/* the window rolls: a place frees when the oldest event leaves it */
	f->p.per_key = 2;
	assert_int_equal(admit_key(f, "10", "shop", 0, 61001, &a), POLICY_ADMITTED);
}

static void release_gives_the_places_back(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a, b;

	f->p.per_chat = 1;
	f->p.per_ip = 1;
	assert_int_equal(admit(f, "r", "10.0.0.9", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "r", "10.0.0.9", 1001, &b), POLICY_RATE_LIMITED);
	assert_int_equal(policy_release(f->s, &b), 0); /* a refusal holds nothing */
	assert_int_equal(policy_release(f->s, &a), 0);
	assert_int_equal(admit(f, "r", "10.0.0.9", 1002, &a), POLICY_ADMITTED);
}

static void channel_usernames_are_one_subject_whatever_their_case(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	char out[POLICY_SUBJECT_MAX];

	assert_int_equal(policy_chat_subject("@My_Channel", out, sizeof out), 0);
	assert_string_equal(out, "@my_channel");
	assert_int_equal(policy_chat_subject("-100123", out, sizeof out), 0);
	assert_string_equal(out, "-100123");
	assert_int_equal(policy_chat_subject("@abcdef", out, 7), -1);
	f->p.per_chat = 1;
	assert_int_equal(admit(f, "@My_Channel", "", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "@my_channel", "", 1000, &a), POLICY_RATE_LIMITED);
}

static void prune_drops_what_left_each_scopes_window(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;

	f->p.per_ip = 100;
	f->p.chat_window_ms = 10000;
	assert_int_equal(admit(f, "p1", "10.0.0.1", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "p2", "10.0.0.1", 31000, &a), POLICY_ADMITTED);
	/* at 40 s: p1 (1 s) left the 10 s chat window, p2 (31 s) did not; both ip events are
	 * inside the 60 s ip window */
	assert_int_equal(policy_prune(&f->p, f->s, 40000), 1);
	assert_int_equal(store_rate_count(f->s, "chat", "p1"), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "p2"), 1);
	assert_int_equal(store_rate_count(f->s, "ip", "10.0.0.1"), 2);
	assert_int_equal(policy_prune(&f->p, f->s, 100000), 3);
	assert_int_equal(policy_prune(&f->p, f->s, 100000), 0);
}

/* CPU time of this thread, in µs: load from other processes does not count. */
static int64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The cost of `rounds` admissions of one chat that already holds `held` events. */
static int64_t cost_of_admissions(struct fixture *f, const char *chat, int held, int rounds)
{
	struct policy_admission a;
	int64_t start;
	int i;

	for (i = 0; i < held; i++)
		assert_int_equal(admit(f, chat, "", 1000 + i / 100, &a), POLICY_ADMITTED);
	start = cpu_us();
	for (i = 0; i < rounds; i++)
		assert_int_equal(admit(f, chat, "", 2000, &a), POLICY_ADMITTED);
	return cpu_us() - start;
}

static void a_limit_of_a_million_answers_as_fast_as_a_limit_of_ten(void **state)
{
	struct fixture *f = *state;
	int64_t small, large;

	/* counting the window would cost ~the events held (here 10,000) per admission */
	f->p.sends_per_second = 10000;
	f->p.send_wait_ms = 30000;
	f->p.per_chat = 10;
	small = cost_of_admissions(f, "small", 0, 8);
	small += cost_of_admissions(f, "small2", 0, 8);
	f->p.per_chat = 1000000;
	large = cost_of_admissions(f, "large", 10000, 16);
	print_message("16 admissions: %lld µs beside 10 events, %lld µs beside 10,000\n",
		      (long long)small, (long long)large);
	/* generous: the same O(1) work, within noise (an index one level deeper) */
	assert_true(large < 4 * small + 2000);
}

/* ---- the send queue --------------------------------------------------------------------- */

static void sends_get_instants_in_arrival_order_spaced_by_the_budget(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	int i;

	f->p.sends_per_second = 10;
	f->p.send_wait_ms = 1000;
	for (i = 0; i <= 10; i++) {
		char chat[16];

		snprintf(chat, sizeof chat, "%d", 100 + i);
		assert_int_equal(admit(f, chat, "", 5000, &a), POLICY_ADMITTED);
		assert_int_equal(a.send_at_us, 5000000 + (int64_t)i * 100000);
		/* the first goes now; the others wait, and read Telegram's pause again after */
		assert_int_equal(policy_rereads_pause(&a), i > 0);
	}
	/* the 12th would go 1.1 s from now, beyond the 1 s wait: refused, told exactly when */
	assert_int_equal(admit(f, "200", "", 5000, &a), POLICY_QUEUE_FULL);
	assert_int_equal(a.retry_after_ms, 1100);
	assert_int_equal(store_rate_count(f->s, "chat", "200"), 0);
	/* 50 ms later the 12th instant (6.1 s) is 1.05 s away: still refused, 1050 ms */
	assert_int_equal(admit(f, "200", "", 5050, &a), POLICY_QUEUE_FULL);
	assert_int_equal(a.retry_after_ms, 1050);
	/* once it is within the wait, it is the next one's */
	assert_int_equal(admit(f, "200", "", 5100, &a), POLICY_ADMITTED);
	assert_int_equal(a.send_at_us, 6100000);
	/* after a quiet spell the queue starts from now again */
	assert_int_equal(admit(f, "201", "", 9000, &a), POLICY_ADMITTED);
	assert_int_equal(a.send_at_us, 9000000);
}

static void spacing_is_rounded_up_so_the_budget_is_never_exceeded(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a, first;

	f->p.sends_per_second = 30;
	assert_int_equal(admit(f, "1", "", 1000, &first), POLICY_ADMITTED);
	assert_int_equal(admit(f, "2", "", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(a.send_at_us - first.send_at_us, 33334);
	f->p.sends_per_second = 1000;
	assert_int_equal(admit(f, "3", "", 1000, &first), POLICY_ADMITTED);
	assert_int_equal(admit(f, "4", "", 1000, &a), POLICY_ADMITTED);
	assert_int_equal(a.send_at_us - first.send_at_us, 1000);
}

static int64_t mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* What otp-fcgi does with an admission: sleep, and take a new instant when woken too late. */
static int wait_for_turn(struct fixture *f, struct policy_admission *a)
{
	int rc;

	while (policy_sleep_for_turn(&f->p, a) != 0)
		if ((rc = policy_requeue(&f->p, f->s, a)) != 0)
			return rc;
	return 0;
}

static void waiting_for_the_turn_sleeps_until_the_instant(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	int64_t start;

	assert_int_equal(admit(f, "1", "", clock_now_us() / 1000 + 30, &a), POLICY_ADMITTED);
	start = mono_us();
	assert_int_equal(wait_for_turn(f, &a), 0);
	assert_true(mono_us() - start >= 25000);
	assert_true(clock_now_us() >= a.send_at_us);
}

static void a_turn_woken_too_late_takes_the_next_free_instant(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a, next;
	int64_t now_ms = clock_now_us() / 1000;

	/* as if the thread had been stalled for a second after its instant */
	f->p.sends_per_second = 10;
	assert_int_equal(admit(f, "1", "", now_ms - 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "2", "", now_ms - 1000, &next), POLICY_ADMITTED);
	assert_int_equal(wait_for_turn(f, &a), 0);
	assert_true(a.send_at_us >= now_ms * 1000);
	assert_true(clock_now_us() - a.send_at_us < 200000);
	/* a full queue answers instead */
	f->p.send_wait_ms = 0;
	assert_int_equal(admit(f, "3", "", now_ms - 1000, &a), POLICY_ADMITTED);
	assert_int_equal(admit(f, "4", "", clock_now_us() / 1000, &next), POLICY_ADMITTED);
	assert_int_equal(wait_for_turn(f, &a), 1);
	assert_int_equal(a.verdict, POLICY_QUEUE_FULL);
	assert_true(a.retry_after_ms >= 1);
}

/* ---- pauses ----------------------------------------------------------------------------- */

static void a_send_pause_longer_than_the_wait_refuses_with_its_end(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	int64_t until = 0;

	assert_int_equal(policy_pause(&f->p, f->s, POLICY_PAUSE_SEND, 7, 10000, "test", &until), 0);
	assert_int_equal(until, 17000);
	assert_int_equal(admit(f, "1", "", 10000, &a), POLICY_SENDS_PAUSED);
	assert_int_equal(a.retry_after_ms, 7000);
	assert_int_equal(store_rate_count(f->s, "chat", "1"), 0);
	/* within the wait (2 s) of its end, a send is admitted for the instant it ends */
	assert_int_equal(admit(f, "1", "", 15500, &a), POLICY_ADMITTED);
	assert_int_equal(a.send_at_us, 17000000);
}

static void pauses_of_one_kind_do_not_hold_the_other(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	int64_t until = -1;

	assert_int_equal(policy_pause(&f->p, f->s, POLICY_PAUSE_SEND, 60, 1000, "t", NULL), 0);
	assert_int_equal(policy_paused_until(&f->p, f->s, POLICY_PAUSE_DELETE, 1000, &until), 0);
	assert_int_equal(until, 0);
	assert_int_equal(policy_paused_until(&f->p, f->s, POLICY_PAUSE_SEND, 1000, &until), 0);
	assert_int_equal(until, 61000);
	assert_int_equal(policy_pause(&f->p, f->s, POLICY_PAUSE_DELETE, 5, 1000, "t", NULL), 0);
	assert_int_equal(policy_paused_until(&f->p, f->s, POLICY_PAUSE_DELETE, 1000, &until), 0);
	assert_int_equal(until, 6000);
	/* a shorter 429 does not shorten the pause in force */
	assert_int_equal(policy_pause(&f->p, f->s, POLICY_PAUSE_SEND, 1, 2000, "t", NULL), 0);
	assert_int_equal(policy_paused_until(&f->p, f->s, POLICY_PAUSE_SEND, 2000, &until), 0);
	assert_int_equal(until, 61000);
	/* a delete pause never holds the send queue */
	assert_int_equal(admit(f, "9", "", 70000, &a), POLICY_ADMITTED);
	assert_string_equal(policy_pause_name(POLICY_PAUSE_SEND), "send");
	assert_string_equal(policy_pause_name(POLICY_PAUSE_DELETE), "delete");
}

static void untrusted_retry_after_is_clamped_without_overflow(void **state)
{
	struct fixture *f = *state;
	const int64_t now = 1700000000000LL;
	int64_t until = 0;

	f->p.max_pause_ms = 3600000;
	assert_int_equal(policy_pause_end(&f->p, now, 7), now + 7000);
	assert_int_equal(policy_pause_end(&f->p, now, 3600), now + 3600000);
	assert_int_equal(policy_pause_end(&f->p, now, 3601), now + 3600000);
	assert_int_equal(policy_pause_end(&f->p, now, 1000000000LL), now + 3600000);
	assert_int_equal(policy_pause_end(&f->p, now, 2147483648LL), now + 3600000);
	assert_int_equal(policy_pause_end(&f->p, now, 9223372036854775807LL), now + 3600000);
	/* a value that wrapped negative on its way in counts as the longest */
	assert_int_equal(policy_pause_end(&f->p, now, -2147483648LL), now + 3600000);
	assert_int_equal(policy_pause_end(&f->p, now, 0), now + 1000);
	assert_int_equal(policy_pause(&f->p, f->s, POLICY_PAUSE_DELETE, 1000000000LL, now, "t",
				      &until), 0);
	assert_int_equal(until, now + 3600000);
	/* a lower bound set later applies to what the store already holds */
	f->p.max_pause_ms = 60000;
	assert_int_equal(policy_paused_until(&f->p, f->s, POLICY_PAUSE_DELETE, now, &until), 0);
	assert_int_equal(until, now + 60000);
}

static void a_hand_written_send_pause_holds_the_queue_no_longer_than_the_bound(void **state)
{
	struct fixture *f = *state;
	struct policy_admission a;
	const int64_t now = 1700000000000LL;

	f->p.max_pause_ms = 60000;
	/* a row of a year, written past policy_pause(): e.g. with the sqlite3 shell */
	assert_int_equal(store_pause_extend(f->s, "send", now + 365LL * 86400000, "hand"), 0);
	assert_int_equal(admit(f, "1", "", now, &a), POLICY_SENDS_PAUSED);
	assert_int_equal(a.retry_after_ms, 60000);
	assert_int_equal(store_rate_count(f->s, "chat", "1"), 0);
	/* as policy_paused_until() reads it: the bound from now, never the row's year */
	assert_int_equal(admit(f, "1", "", now + 30000, &a), POLICY_SENDS_PAUSED);
	assert_int_equal(a.retry_after_ms, 60000);
}

/* A beat a little ahead (another host's clock, a write between our read of now and the store's)
 * is fresh; one further ahead than POLICY_BEAT_FUTURE_MS is stale, or a clock that ran ahead
 * (or an edited row) would keep sends open with nothing deleting. */
static void a_heartbeat_is_fresh_only_between_the_future_bound_and_stale(void **state)
{
	(void)state;
	assert_int_equal(policy_heartbeat(0, 10000), POLICY_BEAT_FRESH);
	assert_int_equal(policy_heartbeat(10000, 10000), POLICY_BEAT_FRESH);
	assert_int_equal(policy_heartbeat(10001, 10000), POLICY_BEAT_STALE);
	assert_int_equal(policy_heartbeat(-POLICY_BEAT_FUTURE_MS, 10000), POLICY_BEAT_FRESH);
	assert_int_equal(policy_heartbeat(-POLICY_BEAT_FUTURE_MS - 1, 10000),
			 POLICY_BEAT_FROM_THE_FUTURE);
	assert_int_equal(policy_heartbeat(-3600000, 10000), POLICY_BEAT_FROM_THE_FUTURE);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_heartbeat_is_fresh_only_between_the_future_bound_and_stale),
		T(chat_limit_refuses_with_retry_after_until_the_oldest_leaves),
		T(a_send_is_admitted_only_while_the_deleter_beats),
		T(ip_limit_is_checked_after_the_chat_and_a_refusal_takes_nothing),
		T(revokes_count_against_the_address_with_its_sends_and_nothing_else),
		T(key_limit_counts_per_owner_and_a_key_s_own_limit_wins),
		T(release_gives_the_places_back),
		T(channel_usernames_are_one_subject_whatever_their_case),
		T(a_hand_written_send_pause_holds_the_queue_no_longer_than_the_bound),
		T(prune_drops_what_left_each_scopes_window),
		T(a_limit_of_a_million_answers_as_fast_as_a_limit_of_ten),
		T(sends_get_instants_in_arrival_order_spaced_by_the_budget),
		T(spacing_is_rounded_up_so_the_budget_is_never_exceeded),
		T(waiting_for_the_turn_sleeps_until_the_instant),
		T(a_turn_woken_too_late_takes_the_next_free_instant),
		T(a_send_pause_longer_than_the_wait_refuses_with_its_end),
		T(pauses_of_one_kind_do_not_hold_the_other),
		T(untrusted_retry_after_is_clamped_without_overflow),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
