/* test_reap.c — deleter/reap.h: what a deletion answer means for its row, the retry delay, and
 * passes driven against a fake batch (the calls it would make, answered by a script) and a real
 * store in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "clock.h"
#include "policy.h"
#include "tmpdir.h"
#include "reap.h"
#include "store.h"
#include "store_fixture.h"
#include "tg.h"

static enum policy_deletion classify(enum tg_status st, int error_code)
{
	struct tg_result res;

	memset(&res, 0, sizeof res);
	res.status = st;
	res.error_code = error_code;
	res.http_status = error_code;
	return policy_deletion_outcome(&res);
}

/* ---- policy_deletion_outcome ---------------------------------------------------------------------- */

static void ok_is_done(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_OK, 0), POLICY_DELETION_DONE);
}

static void not_found_is_done(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_NOT_FOUND, 400), POLICY_DELETION_DONE);
}

static void refused_400_and_403_are_permanent(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_REFUSED, 400), POLICY_DELETION_GIVE_UP);
	assert_int_equal(classify(TG_REFUSED, 403), POLICY_DELETION_GIVE_UP);
}

static void refused_401_and_404_are_retried(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_REFUSED, 401), POLICY_DELETION_RETRY);
	assert_int_equal(classify(TG_REFUSED, 404), POLICY_DELETION_RETRY);
}

static void transient_failures_are_retried(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_RETRY_AFTER, 429), POLICY_DELETION_RETRY);
	assert_int_equal(classify(TG_SERVER_ERROR, 502), POLICY_DELETION_RETRY);
	assert_int_equal(classify(TG_SERVER_ERROR, 0), POLICY_DELETION_RETRY);
	assert_int_equal(classify(TG_TIMEOUT, 0), POLICY_DELETION_RETRY);
	assert_int_equal(classify(TG_UNREACHABLE, 0), POLICY_DELETION_RETRY);
}

/* ---- reap_backoff_ms -------------------------------------------------------------------- */

/* The smallest and largest delay over many seeds. */
static void backoff_range(int attempts, int64_t *lo, int64_t *hi)
{
	unsigned int seed;
	int i;

	*lo = INT64_MAX;
	*hi = INT64_MIN;
	for (i = 0; i < 2000; i++) {
		int64_t d;

		seed = (unsigned int)i * 2654435761u + 1;
		d = reap_backoff_ms(attempts, &seed);
		if (d < *lo)
			*lo = d;
		if (d > *hi)
			*hi = d;
	}
}

static void first_retry_is_one_second_plus_minus_20_percent(void **state)
{
	int64_t lo, hi;

	(void)state;
	backoff_range(1, &lo, &hi);
	assert_true(lo >= 800);
	assert_true(hi <= 1200);
	assert_true(lo < hi); /* jittered, not constant */
}

static void second_retry_is_two_seconds_plus_minus_20_percent(void **state)
{
	int64_t lo, hi;

	(void)state;
	backoff_range(2, &lo, &hi);
	assert_true(lo >= 1600);
	assert_true(hi <= 2400);
}

static void backoff_grows_with_each_attempt_until_the_cap(void **state)
{
	int64_t lo, hi, prev_hi = 0;
	int a;

	(void)state;
	for (a = 1; a <= 7; a++) {
		backoff_range(a, &lo, &hi);
		assert_true(lo > prev_hi);
		prev_hi = hi;
	}
}

static void backoff_is_capped_at_60_seconds_plus_minus_20_percent(void **state)
{
	static const int attempts[] = { 7, 8, 10, 20, 64, 1000, 1 << 30 };
	int64_t lo, hi;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
		backoff_range(attempts[i], &lo, &hi);
		assert_true(lo >= 48000);
		assert_true(hi <= 72000);
	}
}

static void backoff_advances_the_seed(void **state)
{
	unsigned int seed = 12345, before;
	int64_t a, b;
	int i, differ = 0;

	(void)state;
	for (i = 0; i < 16; i++) {
		before = seed;
		a = reap_backoff_ms(5, &seed);
		assert_true(seed != before);
		b = reap_backoff_ms(5, &seed);
		if (a != b)
			differ = 1;
	}
	assert_true(differ);
}

/* ---- passes against a fake batch ------------------------------------------------------- */

#define FAKE_MAX 64

struct fake_call {
	char chat_id[STORE_CHAT_ID_MAX];
	long long ids[TG_DELETE_MESSAGES_MAX];
	int n;
	void *tag;
};

/* The calls reap made, in order; calls[done..ncalls) are queued and not answered yet. A step
 * answers one call with answer() (a batch of one connection), or, stopped or halted, drops
 * every queued call; reap reads them back before it queues more. */
struct fake_batch {
	struct fake_call calls[FAKE_MAX];
	int ncalls, done, nread;
	int halted;
	struct tg_done over[FAKE_MAX];
	void (*answer)(const struct fake_call *c, struct tg_result *res);
};

static int fake_add(void *batch, const char *chat_id, const long long *ids, int n, void *tag)
{
	struct fake_batch *b = batch;
	struct fake_call *c;

	assert_true(b->ncalls < FAKE_MAX);
	assert_in_range(n, 1, TG_DELETE_MESSAGES_MAX);
	c = &b->calls[b->ncalls++];
	snprintf(c->chat_id, sizeof c->chat_id, "%s", chat_id);
	memcpy(c->ids, ids, (size_t)n * sizeof *ids);
	c->n = n;
	c->tag = tag;
	return 0;
}

static int fake_step(void *batch, int stop, int wait_ms)
{
	struct fake_batch *b = batch;
	struct tg_done *d;

	(void)wait_ms;
	if (stop || b->halted) {
		for (; b->done < b->ncalls; b->done++)
			b->over[b->done] = (struct tg_done){ .tag = b->calls[b->done].tag };
		b->halted = 0;
		return 0;
	}
	if (b->done == b->ncalls)
		return 0;
	d = &b->over[b->done];
	*d = (struct tg_done){ .tag = b->calls[b->done].tag, .started = 1 };
	b->answer(&b->calls[b->done], &d->res);
	b->done++;
	return b->done < b->ncalls;
}

static int fake_next_done(void *batch, struct tg_done *out)
{
	struct fake_batch *b = batch;

	if (b->nread == b->done)
		return 0;
	*out = b->over[b->nread++];
	return 1;
}

static void fake_halt(void *batch)
{
	((struct fake_batch *)batch)->halted = 1;
}

static const struct reap_batch_ops fake_ops = { fake_add, fake_step, fake_next_done, fake_halt };

static void answer_ok(const struct fake_call *c, struct tg_result *res)
{
	(void)c;
	res->status = TG_OK;
	res->http_status = 200;
}

/* deleteMessages is refused; alone, message 2 is refused and the others are deleted. */
static void answer_refuse_batches_and_message_2(const struct fake_call *c, struct tg_result *res)
{
	if (c->n > 1 || c->ids[0] == 2) {
		res->status = TG_REFUSED;
		res->http_status = res->error_code = 400;
		snprintf(res->description, sizeof res->description,
			 "Bad Request: message can't be deleted");
	} else {
		answer_ok(c, res);
	}
}

struct reap_fixture {
	char dir[64], moved[80], path[128];
	struct store *s;
	struct fake_batch batch;
	struct reaper r;
	struct policy policy;
	volatile sig_atomic_t stop;
};

static int reap_setup(void **state)
{
	struct reap_fixture *f = calloc(1, sizeof *f);
	char err[256] = "";

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-reap-test-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->moved, sizeof f->moved, "%s.moved", f->dir);
	snprintf(f->path, sizeof f->path, "%s/pending.db", f->dir);
	f->s = store_open(f->path, err, sizeof err);
	if (f->s == NULL) {
		print_error("store_open: %s\n", err);
		return -1;
	}
	f->batch.answer = answer_ok;
	f->policy = (struct policy){ .per_chat = 5, .chat_window_ms = 3600000, .per_ip = 10,
				     .ip_window_ms = 60000, .sends_per_second = 30,
				     .send_wait_ms = 2000, .max_pause_ms = 3600000 };
	reap_init(&f->r, f->s, &f->policy, &f->batch, &fake_ops, &f->stop, 1);
	*state = f;
	return 0;
}

static int reap_teardown(void **state)
{
	struct reap_fixture *f = *state;

	reap_free(&f->r);
	store_close(f->s);
	rename(f->moved, f->dir);
	remove_dir(f->dir);
	free(f);
	return 0;
}

static void add_due(struct reap_fixture *f, const char *chat, long long first, int n)
{
	int64_t due = clock_now_ms() - 1000;
	int i;

	for (i = 0; i < n; i++)
		assert_int_equal(test_pending_add(f->s, chat, first + i, due, NULL), 0);
}

/* Steps the pass under way to its end; returns reap_step's last answer (0 or -1). */
static int run_pass(struct reap_fixture *f)
{
	int rc, steps = 0;

	while ((rc = reap_step(&f->r, 0)) == 1)
		assert_true(++steps < 100);
	assert_false(reap_busy(&f->r));
	return rc;
}

static const struct fake_call *call_for(const struct fake_batch *b, const char *chat, int from)
{
	int i;

	for (i = from; i < b->ncalls; i++)
		if (strcmp(b->calls[i].chat_id, chat) == 0)
			return &b->calls[i];
	return NULL;
}

static void pass_groups_due_rows_per_chat_up_to_100_per_call(void **state)
{
	struct reap_fixture *f = *state;
	const struct fake_call *first, *second;

	add_due(f, "-100500", 1, 3);
	add_due(f, "42", 10, 1);
	add_due(f, "77", 1000, 150);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 154);
	assert_true(reap_busy(&f->r));
	assert_int_equal(f->batch.ncalls, 4);
	assert_int_equal(call_for(&f->batch, "-100500", 0)->n, 3);
	assert_int_equal(call_for(&f->batch, "42", 0)->n, 1);
	first = call_for(&f->batch, "77", 0);
	assert_non_null(first);
	second = call_for(&f->batch, "77", (int)(first - f->batch.calls) + 1);
	assert_non_null(second);
	assert_int_equal(first->n, 100);
	assert_int_equal(second->n, 50);

	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->r.stats.deleted, 154);
	assert_int_equal(store_pending_count(f->s), 0);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 0);
	assert_false(reap_busy(&f->r));
}

static void rows_in_flight_are_not_queued_again_but_new_due_rows_are(void **state)
{
	struct reap_fixture *f = *state;

	add_due(f, "1", 1, 2);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 2);
	assert_int_equal(f->batch.ncalls, 1);
	add_due(f, "2", 5, 1);
	clock_sleep_ms(REAP_FETCH_EVERY_MS + 10);
	/* the step fetches again before answering: chat 1's rows are still in the table and
	 * due, but in flight */
	f->batch.answer = answer_ok;
	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->batch.ncalls, 2);
	assert_string_equal(f->batch.calls[1].chat_id, "2");
	assert_int_equal(f->batch.calls[1].n, 1);
	assert_int_equal(store_pending_count(f->s), 0);
}

static void refused_batch_is_split_and_only_the_refused_message_given_up(void **state)
{
	struct reap_fixture *f = *state;

	f->batch.answer = answer_refuse_batches_and_message_2;
	add_due(f, "9", 1, 3);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 3);
	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->batch.ncalls, 4); /* deleteMessages, then each alone */
	assert_int_equal(f->batch.calls[0].n, 3);
	assert_int_equal(f->batch.calls[1].n + f->batch.calls[2].n + f->batch.calls[3].n, 3);
	assert_int_equal(f->r.stats.deleted, 2);
	assert_int_equal(f->r.stats.failed_permanently, 1);
	assert_int_equal(store_pending_count(f->s), 0);
}

static void failed_first_read_is_minus_one(void **state)
{
	struct reap_fixture *f = *state;

	add_due(f, "1", 1, 1);
	assert_int_equal(rename(f->dir, f->moved), 0); /* every store call fails now */
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), -1);
	assert_false(reap_busy(&f->r));
	assert_int_equal(f->batch.ncalls, 0);
	assert_int_equal(rename(f->moved, f->dir), 0);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 1);
	assert_int_equal(run_pass(f), 0);
}

/* Telegram confirmed, removing the rows failed: the pass ends in -1, and the next pass removes
 * the rows without asking Telegram again. */
static void failed_removal_is_retried_without_calling_telegram_again(void **state)
{
	struct reap_fixture *f = *state;

	add_due(f, "1", 1, 2);
	add_due(f, "2", 7, 1);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 3);
	assert_int_equal(f->batch.ncalls, 2);
	assert_int_equal(rename(f->dir, f->moved), 0);
	assert_int_equal(run_pass(f), -1);
	assert_int_equal(f->r.stats.deleted, 3);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), -1); /* still failing */
	assert_int_equal(rename(f->moved, f->dir), 0);
	assert_int_equal(store_pending_count(f->s), 3); /* the rows are still there */
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 0);
	assert_int_equal(store_pending_count(f->s), 0);
	assert_int_equal(f->batch.ncalls, 2); /* and Telegram was not asked again */
}

static void stop_drops_the_calls_not_answered_and_keeps_their_rows(void **state)
{
	struct reap_fixture *f = *state;

	add_due(f, "1", 1, 1);
	add_due(f, "2", 2, 1);
	assert_int_equal(reap_pass(&f->r, clock_now_ms(), 500), 2);
	f->stop = 1;
	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->r.stats.deleted, 0);
	assert_int_equal(store_pending_count(f->s), 2);
}

static void answer_server_error(const struct fake_call *c, struct tg_result *res)
{
	(void)c;
	res->status = TG_SERVER_ERROR;
	res->http_status = res->error_code = 502;
}

/* The early part of a stop's drain: a pass at a later instant takes rows not yet due; those
 * deleted before their delete_at are counted apart. */
static void rows_deleted_before_their_delete_at_are_counted_early(void **state)
{
	struct reap_fixture *f = *state;
	int64_t now = clock_now_ms();

	add_due(f, "1", 1, 1);                                       /* due already */
	assert_int_equal(test_pending_add(f->s, "2", 2, now + 30000, NULL), 0); /* due in 30 s */
	assert_int_equal(reap_pass(&f->r, now + 30000, 500), 2);
	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->r.stats.deleted, 2);
	assert_int_equal(f->r.stats.deleted_early, 1);
	assert_int_equal(store_pending_count(f->s), 0);
}

/* A failed row's next try is noted (a drain waits for it), never before its delete_at. */
static void a_retry_notes_its_next_try(void **state)
{
	struct reap_fixture *f = *state;
	int64_t now = clock_now_ms(), last = 0;

	f->batch.answer = answer_server_error;
	assert_int_equal(test_pending_add(f->s, "3", 3, now + 30000, NULL), 0);
	assert_int_equal(reap_pass(&f->r, now + 30000, 500), 1);
	assert_int_equal(run_pass(f), 0);
	assert_int_equal(f->r.stats.retried, 1);
	assert_int_equal(f->r.stats.deleted_early, 0);
	assert_true(f->r.last_retry_ms >= now + 30000);
	assert_int_equal(store_pending_last(f->s, &last), 1);
	assert_int_equal(last, f->r.last_retry_ms);
}

int main(void)
{
#define R(fn) cmocka_unit_test_setup_teardown(fn, reap_setup, reap_teardown)
	const struct CMUnitTest tests[] = {
		R(pass_groups_due_rows_per_chat_up_to_100_per_call),
		R(rows_in_flight_are_not_queued_again_but_new_due_rows_are),
		R(refused_batch_is_split_and_only_the_refused_message_given_up),
		R(failed_first_read_is_minus_one),
		R(failed_removal_is_retried_without_calling_telegram_again),
		R(stop_drops_the_calls_not_answered_and_keeps_their_rows),
		R(rows_deleted_before_their_delete_at_are_counted_early),
		R(a_retry_notes_its_next_try),
		cmocka_unit_test(ok_is_done),
		cmocka_unit_test(not_found_is_done),
		cmocka_unit_test(refused_400_and_403_are_permanent),
		cmocka_unit_test(refused_401_and_404_are_retried),
		cmocka_unit_test(transient_failures_are_retried),
		cmocka_unit_test(first_retry_is_one_second_plus_minus_20_percent),
		cmocka_unit_test(second_retry_is_two_seconds_plus_minus_20_percent),
		cmocka_unit_test(backoff_grows_with_each_attempt_until_the_cap),
		cmocka_unit_test(backoff_is_capped_at_60_seconds_plus_minus_20_percent),
		cmocka_unit_test(backoff_advances_the_seed),
	};
#undef R

	return cmocka_run_group_tests(tests, NULL, NULL);
}
