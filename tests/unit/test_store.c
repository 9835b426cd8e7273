/* test_store.c — lib/store.h against a real SQLite file in a fresh temporary directory, and again
 * against a real Redis server when OTP_TEST_REDIS is set (store_fixture.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "clock.h"
#include "store.h"
#include "store_fixture.h"
#include "tmpdir.h"

struct fixture {
	char dir[64];
	char path[256];
	struct store *s;
};


static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-store-test-XXXXXX");
	f->s = test_store_open_temp(f->dir, f->path, sizeof f->path);
	if (f->s == NULL) {
		free(f);
		return -1;
	}
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

static struct store *open_second(const struct fixture *f)
{
	char err[256] = "";
	struct store *s2 = store_open(f->path, err, sizeof err);

	if (s2 == NULL)
		print_error("second store_open: %s\n", err);
	assert_non_null(s2);
	return s2;
}

/* ---- opening ---------------------------------------------------------------------------- */

static void open_creates_the_schema_and_a_second_open_works(void **state)
{
	struct fixture *f = *state;
	struct store *s2;
	struct stat st;
	int64_t t = -1;

	if (!test_store_is_redis())
		assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(store_pending_count(f->s), 0);
	assert_int_equal(store_pending_next(f->s, &t), 0);
	assert_int_equal(store_heartbeat_get(f->s, "otp-deleter", &t), 0);

	s2 = open_second(f);
	assert_int_equal(store_pending_count(s2), 0);
	assert_int_equal(test_pending_add(f->s, "100", 1, 5000, NULL), 0);
	assert_int_equal(store_pending_count(s2), 1);
	store_close(s2);
}

static void open_in_a_missing_directory_fails_with_a_message(void **state)
{
	struct fixture *f = *state;
	char path[256], err[256] = "";

	SQLITE_ONLY();

	snprintf(path, sizeof path, "%s/no-such-dir/pending.db", f->dir);
	assert_null(store_open(path, err, sizeof err));
	assert_true(err[0] != '\0');
	assert_non_null(strstr(err, "no-such-dir"));
}

static void assert_mode_0600(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	if ((st.st_mode & 0777) != 0600)
		print_error("%s has mode %04o\n", path, (unsigned)(st.st_mode & 0777));
	assert_int_equal(st.st_mode & 0777, 0600);
}

/* The database and its -wal and -shm are 0600, whatever the umask; a looser file is tightened. */
static void database_files_are_private(void **state)
{
	struct fixture *f = *state;
	struct store *s2;
	char aux[300];
	mode_t old;

	SQLITE_ONLY();
	old = umask(0);

	assert_int_equal(test_pending_add(f->s, "1", 1, 1000, NULL), 0);
	assert_mode_0600(f->path);
	snprintf(aux, sizeof aux, "%s-wal", f->path);
	assert_mode_0600(aux);
	snprintf(aux, sizeof aux, "%s-shm", f->path);
	assert_mode_0600(aux);

	assert_int_equal(chmod(f->path, 0666), 0);
	s2 = open_second(f);
	assert_mode_0600(f->path);
	store_close(s2);
	umask(old);
}

static void open_fails_naming(const char *path, const char *needle)
{
	char err[512] = "";
	struct store *s = store_open(path, err, sizeof err);

	if (s != NULL || strstr(err, needle) == NULL)
		print_error("store_open(%s): %s\n", path, s != NULL ? "opened" : err);
	assert_null(s);
	assert_non_null(strstr(err, needle));
}

/* A directory others may write is refused with one line naming it; nothing is created in it. */
static void directory_writable_by_others_is_refused(void **state)
{
	struct fixture *f = *state;
	char dir[160], path[200];

	snprintf(dir, sizeof dir, "%s/shared", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(path, sizeof path, "%s/pending.db", dir);
	open_fails_naming(path, "writable by its group or others");
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(chmod(dir, 0770), 0);
	open_fails_naming(path, dir);
	rmdir(dir);
}

/* A directory of another user is refused (needs root to make one). */
static void directory_of_another_user_is_refused(void **state)
{
	struct fixture *f = *state;
	char dir[160], path[200];

	if (geteuid() != 0)
		skip();
	snprintf(dir, sizeof dir, "%s/theirs", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chown(dir, 65534, 65534), 0);
	snprintf(path, sizeof path, "%s/pending.db", dir);
	open_fails_naming(path, "belongs to uid 65534");
	assert_int_not_equal(access(path, F_OK), 0);
	rmdir(dir);
}

/* ---- pending deletions ------------------------------------------------------------------ */

static void pending_add_then_due_returns_the_row_at_its_time(void **state)
{
	struct fixture *f = *state;
	struct pending p[4];

	memset(p, 0, sizeof p);
	assert_int_equal(test_pending_add(f->s, "-1001234567890", 77, 10000, NULL), 0);
	assert_int_equal(store_pending_due(f->s, 9999, p, 4), 0);
	assert_int_equal(store_pending_due(f->s, 10000, p, 4), 1);
	assert_true(p[0].id > 0);
	assert_string_equal(p[0].chat_id, "-1001234567890");
	assert_int_equal(p[0].message_id, 77);
	assert_int_equal(p[0].delete_at_ms, 10000);
	assert_int_equal(p[0].next_try_ms, 10000);
	assert_int_equal(p[0].attempts, 0);
}

/* The rows of many sends in one call: each recorded as store_pending_add() would. */
static void pending_add_many_records_every_row(void **state)
{
	struct fixture *f = *state;
	struct store_pending_row rows[3];
	struct pending p[4];
	int i;

	memset(rows, 0, sizeof rows);
	for (i = 0; i < 3; i++) {
		rows[i].ref = (struct pending_ref){ "@Chat", "@chat", 10 + i, i == 1 ? "alice" : NULL };
		rows[i].delete_at_ms = 1000 * (i + 1);
		rows[i].failed = -1;
	}
	assert_int_equal(store_pending_add_many(f->s, rows, 3), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(rows[i].failed, 0);
		assert_int_equal(rows[i].stored_ms, 1000 * (i + 1));
	}
	assert_int_equal(store_pending_due(f->s, 3000, p, 4), 3);
	for (i = 0; i < 3; i++) {
		assert_string_equal(p[i].chat_id, "@Chat");
		assert_int_equal(p[i].message_id, 10 + i);
		assert_int_equal(p[i].delete_at_ms, 1000 * (i + 1));
	}
	/* each row kept its own owner: only alice finds hers */
	assert_int_equal(test_pending_claim_owned(f->s, "@chat", 11, "alice", 0, p),
			 STORE_CLAIM_DUE);
	assert_int_equal(test_pending_claim_owned(f->s, "@chat", 10, "alice", 0, p),
			 STORE_CLAIM_NONE);
	assert_int_equal(store_pending_add_many(f->s, rows, 0), 0);
}

/* One row the store refuses (SQLite: a message recorded twice) fails alone: the rows beside it
 * in the transaction are committed. */
static void pending_add_many_fails_only_the_row_that_fails(void **state)
{
	struct fixture *f = *state;
	struct store_pending_row rows[3];
	int i;

	SQLITE_ONLY(); /* Redis records the same message twice without a word */
	assert_int_equal(test_pending_add(f->s, "5", 2, 1000, NULL), 0);
	memset(rows, 0, sizeof rows);
	for (i = 0; i < 3; i++) {
		rows[i].ref = (struct pending_ref){ "5", "5", 1 + i, NULL };
		rows[i].delete_at_ms = 2000;
	}
	assert_int_equal(store_pending_add_many(f->s, rows, 3), 1);
	assert_int_equal(rows[0].failed, 0);
	assert_int_equal(rows[1].failed, 1);
	assert_int_equal(rows[2].failed, 0);
	assert_non_null(strstr(store_strerror(f->s), "UNIQUE"));
	assert_int_equal(store_pending_count(f->s), 3);
	/* the store goes on writing after it */
	assert_int_equal(test_pending_add(f->s, "5", 9, 1000, NULL), 0);
	assert_int_equal(store_pending_count(f->s), 4);
}

static void pending_next_is_empty_then_the_earliest_try(void **state)
{
	struct fixture *f = *state;
	int64_t next = -1;

	assert_int_equal(store_pending_next(f->s, &next), 0);
	assert_int_equal(test_pending_add(f->s, "1", 1, 3000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "1", 2, 1000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "1", 3, 2000, NULL), 0);
	assert_int_equal(store_pending_next(f->s, &next), 1);
	assert_int_equal(next, 1000);
}

static void pending_last_is_empty_then_the_latest_try_retries_included(void **state)
{
	struct fixture *f = *state;
	struct pending p[4];
	int64_t last = -1;

	assert_int_equal(store_pending_last(f->s, &last), 0);
	assert_int_equal(test_pending_add(f->s, "1", 1, 3000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "1", 2, 1000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "1", 3, 2000, NULL), 0);
	assert_int_equal(store_pending_last(f->s, &last), 1);
	assert_int_equal(last, 3000);
	/* a retry moves the row's next try: the last one is the latest of them */
	assert_int_equal(store_pending_due(f->s, 1000, p, 4), 1);
	assert_int_equal(store_pending_retry(f->s, p[0].id, 9000), 0);
	assert_int_equal(store_pending_last(f->s, &last), 1);
	assert_int_equal(last, 9000);
}

static void pending_count_and_remove(void **state)
{
	struct fixture *f = *state;
	struct pending p[4];

	assert_int_equal(test_pending_add(f->s, "@channel_one", 10, 1000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "42", 11, 2000, NULL), 0);
	assert_int_equal(store_pending_count(f->s), 2);
	assert_int_equal(store_pending_due(f->s, 1000, p, 4), 1);
	assert_int_equal(p[0].message_id, 10);
	assert_int_equal(store_pending_remove(f->s, p[0].id), 0);
	assert_int_equal(store_pending_count(f->s), 1);
	assert_int_equal(store_pending_due(f->s, 5000, p, 4), 1);
	assert_string_equal(p[0].chat_id, "42");
	assert_int_equal(p[0].message_id, 11);
	assert_int_equal(store_pending_remove(f->s, p[0].id), 0);
	assert_int_equal(store_pending_count(f->s), 0);
}

static void pending_retry_increments_attempts_and_moves_the_next_try(void **state)
{
	struct fixture *f = *state;
	struct pending p[2];
	int64_t next = 0, id;

	assert_int_equal(test_pending_add(f->s, "5", 9, 1000, NULL), 0);
	assert_int_equal(store_pending_due(f->s, 1000, p, 2), 1);
	id = p[0].id;
	assert_int_equal(store_pending_retry(f->s, id, 5000), 0);
	assert_int_equal(store_pending_due(f->s, 4999, p, 2), 0);
	assert_int_equal(store_pending_next(f->s, &next), 1);
	assert_int_equal(next, 5000);
	assert_int_equal(store_pending_due(f->s, 5000, p, 2), 1);
	assert_int_equal(p[0].id, id);
	assert_int_equal(p[0].attempts, 1);
	assert_int_equal(p[0].next_try_ms, 5000);
	assert_int_equal(p[0].delete_at_ms, 1000);
	assert_int_equal(store_pending_retry(f->s, id, 9000), 0);
	assert_int_equal(store_pending_due(f->s, 9000, p, 2), 1);
	assert_int_equal(p[0].attempts, 2);
	assert_int_equal(p[0].next_try_ms, 9000);
	assert_int_equal(store_pending_count(f->s), 1);
}

static void pending_retry_is_never_earlier_than_delete_at(void **state)
{
	struct fixture *f = *state;
	struct pending p[2];
	int64_t next = 0;

	assert_int_equal(test_pending_add(f->s, "5", 9, 10000, NULL), 0);
	assert_int_equal(store_pending_due(f->s, 10000, p, 2), 1);
	assert_int_equal(store_pending_retry(f->s, p[0].id, 500), 0);
	assert_int_equal(store_pending_next(f->s, &next), 1);
	assert_int_equal(next, 10000);
	assert_int_equal(store_pending_due(f->s, 9999, p, 2), 0);
	assert_int_equal(store_pending_due(f->s, 10000, p, 2), 1);
	assert_int_equal(p[0].attempts, 1);
	assert_int_equal(p[0].next_try_ms, 10000);
}

static void pending_due_is_earliest_first_and_respects_the_limit(void **state)
{
	struct fixture *f = *state;
	static const int64_t at[] = { 5000, 1000, 4000, 2000, 3000 };
	struct pending p[8];
	size_t i;

	for (i = 0; i < sizeof at / sizeof at[0]; i++)
		assert_int_equal(test_pending_add(f->s, "7", (long long)i + 100, at[i], NULL), 0);
	assert_int_equal(store_pending_due(f->s, 10000, p, 3), 3);
	assert_int_equal(p[0].delete_at_ms, 1000);
	assert_int_equal(p[1].delete_at_ms, 2000);
	assert_int_equal(p[2].delete_at_ms, 3000);
	assert_int_equal(p[0].message_id, 101);
	if (test_store_is_redis()) {
		/* the rows returned are claimed (store.h): the next read gets the others */
		assert_int_equal(store_pending_due(f->s, 10000, p, 8), 2);
		assert_int_equal(p[0].delete_at_ms, 4000);
		assert_int_equal(p[1].delete_at_ms, 5000);
		assert_int_equal(store_pending_due(f->s, 10000, p, 8), 0);
		return;
	}
	assert_int_equal(store_pending_due(f->s, 10000, p, 8), 5);
	for (i = 1; i < 5; i++)
		assert_true(p[i - 1].next_try_ms <= p[i].next_try_ms);
	assert_int_equal(p[4].delete_at_ms, 5000);
	/* only what is due */
	assert_int_equal(store_pending_due(f->s, 3500, p, 8), 3);
}

/* Redis: several deleters share the rows, so a read claims them for the lease (30 s by
 * default); a deleter that died holding them loses nothing: they are due again after it. */
static void redis_due_rows_are_claimed_until_the_lease_ends(void **state)
{
	struct fixture *f = *state;
	struct store *s2;
	struct pending p[4];
	int64_t next = 0;

	if (!test_store_is_redis())
		skip();
	assert_int_equal(test_pending_add(f->s, "9", 1, 1000, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "9", 2, 2000, NULL), 0);
	assert_int_equal(store_pending_due(f->s, 1500, p, 4), 1);
	assert_int_equal(p[0].message_id, 1);
	s2 = open_second(f);
	/* another deleter sees only the row nobody holds */
	assert_int_equal(store_pending_due(s2, 2500, p, 4), 1);
	assert_int_equal(p[0].message_id, 2);
	assert_int_equal(store_pending_due(s2, 2500, p, 4), 0);
	assert_int_equal(store_pending_next(s2, &next), 1);
	assert_int_equal(next, 1500 + 30000);
	/* the first lease ran out: taken over, attempts unchanged */
	assert_int_equal(store_pending_due(s2, 1500 + 30000, p, 4), 1);
	assert_int_equal(p[0].message_id, 1);
	assert_int_equal(p[0].attempts, 0);
	/* a confirmed deletion removes it for good; a retry makes it due at its time */
	assert_int_equal(store_pending_remove(s2, p[0].id), 0);
	assert_int_equal(store_pending_count(f->s), 1);
	assert_int_equal(store_pending_due(f->s, 100000, p, 4), 1);
	assert_int_equal(store_pending_retry(f->s, p[0].id, 40000), 0);
	assert_int_equal(store_pending_next(s2, &next), 1);
	assert_int_equal(next, 40000);
	store_close(s2);
}

/* ---- rate logs (their meaning is tested in test_policy.c) -------------------------------- */

static struct store_rate_rule rule(const char *scope, const char *subject, int limit,
				   int64_t expired_ms)
{
	return (struct store_rate_rule){ scope, subject, limit, expired_ms };
}

#define TAKERS 16
#define TAKES_EACH 20
#define SHARED_LIMIT 150

struct taker {
	const struct fixture *f;
	int bad;             /* 1: every take names a subject too long for the store */
	int admitted, refused, failed;
};

static void *take_many(void *p)
{
	struct taker *k = p;
	char err[256] = "", mine[STORE_SUBJECT_MAX + 8];
	struct store *s = store_open(k->f->path, err, sizeof err);
	struct store_rate_verdict v;
	struct store_rate_rule r[2];
	int i;

	if (s == NULL)
		return NULL;
	memset(mine, 'x', sizeof mine - 1);
	mine[k->bad ? sizeof mine - 1 : 8] = '\0';
	/* the bad thread's first rule is never full: its event is written, then undone when the
	 * second rule's fails */
	r[0] = (struct store_rate_rule){ "chat", k->bad ? "alone" : "shared",
					 k->bad ? 1000000 : SHARED_LIMIT, 0 };
	r[1] = (struct store_rate_rule){ "ip", mine, 1000000, 0 };
	for (i = 0; i < TAKES_EACH; i++) {
		if (store_rate_take(s, r, 2, NULL, 1000, &v) != 0)
			k->failed++;
		else if (v.refused_rule >= 0)
			k->refused++;
		else
			k->admitted++;
	}
	store_close(s);
	return NULL;
}

/* Takes from many threads at once (SQLite writes them in shared transactions): the limit holds
 * exactly, and one thread whose every take fails leaves nothing behind and fails no other. */
static void concurrent_takes_each_get_their_own_answer(void **state)
{
	struct fixture *f = *state;
	struct taker k[TAKERS];
	pthread_t t[TAKERS];
	int i, admitted = 0;

	memset(k, 0, sizeof k);
	for (i = 0; i < TAKERS; i++) {
		k[i].f = f;
		k[i].bad = i == 0;
		assert_int_equal(pthread_create(&t[i], NULL, take_many, &k[i]), 0);
	}
	for (i = 0; i < TAKERS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(k[0].failed, TAKES_EACH);
	for (i = 1; i < TAKERS; i++) {
		assert_int_equal(k[i].failed, 0);
		assert_int_equal(k[i].admitted + k[i].refused, TAKES_EACH);
		admitted += k[i].admitted;
	}
	assert_int_equal(admitted, SHARED_LIMIT);
	assert_int_equal(store_rate_count(f->s, "chat", "shared"), SHARED_LIMIT);
	assert_int_equal(store_rate_count(f->s, "chat", "alone"), 0);
}

static void rate_take_refuses_at_the_limit_naming_the_oldest_event(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule r = rule("chat", "42", 3, 0);
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1000, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(v.nslots, 1);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 2000, &v), 0);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 3000, &v), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "42"), 3);

	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 4000, &v), 0);
	assert_int_equal(v.refused_rule, 0);
	assert_int_equal(v.nslots, 0);
	assert_int_equal(v.freeing_at_ms, 1000);
	assert_int_equal(store_rate_count(f->s, "chat", "42"), 3);

	/* events at or before expired_ms are dropped, and the count follows */
	r.expired_ms = 1000;
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 4000, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(store_rate_count(f->s, "chat", "42"), 3);
	assert_int_equal(store_rate_count(f->s, "chat", "43"), 0);
}

static void rate_release_and_prune_keep_the_counts_exact(void **state)
{
	struct fixture *f = *state;
	const struct store_rate_rule rules[2] = { rule("chat", "r", 5, 0), rule("ip", "r", 5, 0) };
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, rules, 2, NULL, 1000, &v), 0);
	assert_int_equal(v.nslots, 2);
	assert_true(v.slot_ids[0] != v.slot_ids[1]);
	assert_int_equal(store_rate_take(f->s, rules, 2, NULL, 2000, &v), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "r"), 2);
	assert_int_equal(store_rate_release(f->s, &v), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "r"), 1);
	assert_int_equal(store_rate_count(f->s, "ip", "r"), 1);
	assert_int_equal(store_rate_take(f->s, rules, 2, NULL, 3000, &v), 0);
	assert_int_equal(store_rate_prune(f->s, "chat", 2999), 1);
	assert_int_equal(store_rate_prune(f->s, "chat", 2999), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "r"), 1);
	assert_int_equal(store_rate_count(f->s, "ip", "r"), 2);
	assert_int_equal(store_rate_prune(f->s, "ip", 5000), 2);
	assert_int_equal(store_rate_count(f->s, "ip", "r"), 0);
}

/* otp-fcgi's threads share a pool of handles: the one that gives events back is often not the
 * one that took them, and that one has taken others since. */
static void rate_events_are_released_on_any_handle(void **state)
{
	struct fixture *f = *state;
	const struct store_rate_rule rules[2] = { rule("chat", "@Any", 5, 0),
						  rule("ip", "2001:db8::1", 5, 0) };
	struct store_rate_verdict v, later;
	struct store *s2 = open_second(f);

	assert_int_equal(store_rate_take(f->s, rules, 2, NULL, 1000, &v), 0);
	assert_int_equal(store_rate_take(f->s, rules, 2, NULL, 2000, &later), 0);
	assert_int_equal(store_rate_release(s2, &v), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "@Any"), 1);
	assert_int_equal(store_rate_count(f->s, "ip", "2001:db8::1"), 1);
	assert_int_equal(store_rate_release(s2, &later), 0);
	assert_int_equal(store_rate_count(f->s, "chat", "@Any"), 0);
	assert_int_equal(store_rate_count(f->s, "ip", "2001:db8::1"), 0);
	store_close(s2);
}

/* Expired events never refuse a request: below the limit they may stay counted until a sweep
 * (SQLite) or go at once (Redis); at the limit they are dropped before deciding. */
static void rate_expired_events_are_dropped_before_they_could_refuse(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule r = rule("chat", "old", 3, 0);
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1000, &v), 0);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 2000, &v), 0);
	r.expired_ms = 50000; /* both left the window */
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 60000, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 60001, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 60002, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(store_rate_count(f->s, "chat", "old"), 3);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 60003, &v), 0);
	assert_int_equal(v.refused_rule, 0);
	assert_int_equal(v.freeing_at_ms, 60000);
}

/* A busy subject counts several events in one millisecond (SQLite keeps them as one row): each
 * counts, names its instant when it frees a place, goes back and is pruned one by one. */
static void rate_events_of_one_instant_count_one_by_one(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule r = rule("ip", "busy", 3, 0);
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1000, &v), 0);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1000, &v), 0);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1500, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(store_rate_count(f->s, "ip", "busy"), 3);
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 2000, &v), 0);
	assert_int_equal(v.refused_rule, 0);
	assert_int_equal(v.freeing_at_ms, 1000);
	/* a limit lowered below what the log holds: a place frees when the second oldest leaves
	 * (limit 2: the other event of 1000), or the third (limit 1: 1500) */
	r.limit = 2;
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 2000, &v), 0);
	assert_int_equal(v.freeing_at_ms, 1000);
	r.limit = 1;
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 2000, &v), 0);
	assert_int_equal(v.freeing_at_ms, 1500);
	/* one of two events of an instant goes back, the other stays */
	r.limit = 10;
	assert_int_equal(store_rate_take(f->s, &r, 1, NULL, 1500, &v), 0);
	assert_int_equal(store_rate_count(f->s, "ip", "busy"), 4);
	assert_int_equal(store_rate_release(f->s, &v), 0);
	assert_int_equal(store_rate_count(f->s, "ip", "busy"), 3);
	/* pruning counts events, not instants */
	assert_int_equal(store_rate_prune(f->s, "ip", 1000), 2);
	assert_int_equal(store_rate_count(f->s, "ip", "busy"), 1);
	assert_int_equal(store_rate_prune(f->s, "ip", 1500), 1);
	assert_int_equal(store_rate_count(f->s, "ip", "busy"), 0);
}

static void rate_take_with_too_many_rules_fails(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule rules[STORE_RATE_RULES_MAX + 1];
	struct store_rate_verdict v;
	int i;

	for (i = 0; i <= STORE_RATE_RULES_MAX; i++)
		rules[i] = rule("chat", "x", 1, 0);
	assert_int_equal(store_rate_take(f->s, rules, STORE_RATE_RULES_MAX + 1, NULL, 1000, &v), -1);
	assert_true(store_strerror(f->s)[0] != '\0');
}

/* ---- the send queue and pauses -------------------------------------------------------- */

#define NO_PAUSE_CAP 1000000000000LL /* µs: later than any instant these tests use */

static void slots_are_spaced_and_refused_beyond_the_latest(void **state)
{
	struct fixture *f = *state;
	struct store_slot_request q = { 1000000, 100000, 1250000, "send", NO_PAUSE_CAP, 1350000,
					NULL, 0, 0 };
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_refused, 0);
	assert_int_equal(v.slot_us, 1000000);
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 1100000);
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 1200000);
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_refused, 1);
	assert_int_equal(v.slot_us, 1300000);
	/* a refusal takes nothing: the same instant is offered again */
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 1300000);
	/* later, the queue has emptied: now is the instant */
	q.now_us = 5000000;
	q.latest_us = 5250000;
	q.reset_after_us = 5350000;
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 5000, &v), 0);
	assert_int_equal(v.slot_refused, 0);
	assert_int_equal(v.slot_us, 5000000);
}

/* A queue further ahead than the caller's reset_after_us was written under a clock that has
 * since stepped back: it starts again from now instead of refusing every send until the clock
 * catches up. A queue within the bound is honoured. */
static void a_queue_beyond_the_reset_bound_starts_again_from_now(void **state)
{
	struct fixture *f = *state;
	struct store_slot_request ahead = { 100000000, 100000, 100250000, NULL, NO_PAUSE_CAP,
					    100350000, NULL, 0, 0 };
	struct store_slot_request q = { 1000000, 100000, 1250000, NULL, NO_PAUSE_CAP, 1350000,
					NULL, 0, 0 };
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, NULL, 0, &ahead, 100000, &v), 0);
	assert_int_equal(v.slot_us, 100000000); /* the queue's next free instant: 100.1 s */
	q.reset_after_us = 100100000;           /* 100.1 s is within: honoured, and too late */
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_refused, 1);
	assert_int_equal(v.slot_us, 100100000);
	q.reset_after_us = 1350000;             /* beyond: the queue starts again from now */
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_refused, 0);
	assert_int_equal(v.slot_us, 1000000);
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 1100000);
}

/* The heartbeat a slot names is read in the same write: missing or out of its bounds, nothing
 * is taken and no rule is looked at. */
static void a_heartbeat_out_of_bounds_takes_nothing(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule r = rule("chat", "beat", 1, 0);
	struct store_slot_request q = { .now_us = 5000000, .spacing_us = 1000,
					.latest_us = 6000000, .pause_cap_us = NO_PAUSE_CAP,
					.reset_after_us = 6001000, .beat_program = "otp-deleter", .beat_after_ms = 4000,
					.beat_before_ms = 6000 };
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 5000, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.beat_found, 0);
	assert_int_equal(v.nslots, 0);
	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 3999), 0); /* too old */
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 5000, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.beat_found, 1);
	assert_int_equal(v.beat_ms, 3999);
	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 6001), 0); /* ahead */
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 5000, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.beat_ms, 6001);
	assert_int_equal(store_rate_count(f->s, "chat", "beat"), 0);
	/* within the bounds (inclusive): taken, the slot at now as if nothing had been asked */
	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 4000), 0);
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 5000, &v), 0);
	assert_int_equal(v.beat_refused, 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(v.slot_us, 5000000);
	assert_int_equal(v.nslots, 1);
	/* the beat comes first: a full rule behind a missing beat is not reported */
	q.beat_program = "nobody";
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 5000, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.refused_rule, -1);
}

static void a_full_rule_takes_no_slot_and_a_refused_slot_takes_no_event(void **state)
{
	struct fixture *f = *state;
	struct store_rate_rule r = rule("chat", "q", 1, 0);
	struct store_slot_request q = { 1000000, 100000, 1050000, NULL, NO_PAUSE_CAP, 1150000, NULL, 0, 0 };
	struct store_rate_verdict v;

	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 1000, &v), 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(v.slot_us, 1000000);
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 1000, &v), 0);
	assert_int_equal(v.refused_rule, 0);
	r.subject = "other";
	assert_int_equal(store_rate_take(f->s, &r, 1, &q, 1000, &v), 0);
	assert_int_equal(v.slot_refused, 1); /* 1.1 s is beyond 1.05 s */
	assert_int_equal(v.nslots, 0);
	assert_int_equal(store_rate_count(f->s, "chat", "other"), 0);
}

static void pauses_are_per_kind_and_only_extended(void **state)
{
	struct fixture *f = *state;
	struct store_slot_request q = { 1000000, 1000, 4000000, "send", NO_PAUSE_CAP, 4001000, NULL, 0, 0 };
	struct store_rate_verdict v;
	int64_t until = 0;

	assert_int_equal(store_pause_get(f->s, "send", &until), 0);
	assert_int_equal(store_pause_extend(f->s, "send", 3000, "test"), 0);
	assert_int_equal(store_pause_extend(f->s, "send", 2000, "test"), 0);
	assert_int_equal(store_pause_get(f->s, "send", &until), 1);
	assert_int_equal(until, 3000);
	assert_int_equal(store_pause_get(f->s, "delete", &until), 0);
	/* the queue holds sends until the pause ends, and says so */
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 3000000);
	assert_int_equal(v.slot_paused, 1);
	assert_int_equal(v.slot_refused, 0);
	q.pause_kind = "delete";
	assert_int_equal(store_rate_take(f->s, NULL, 0, &q, 1000, &v), 0);
	assert_int_equal(v.slot_us, 3001000);
	assert_int_equal(v.slot_paused, 0);
}

/* ---- heartbeats ------------------------------------------------------------------------- */

static void heartbeat_absent_is_zero_then_set_and_get(void **state)
{
	struct fixture *f = *state;
	int64_t beat = -1;

	assert_int_equal(store_heartbeat_get(f->s, "otp-deleter", &beat), 0);
	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 123456789), 0);
	assert_int_equal(store_heartbeat_get(f->s, "otp-deleter", &beat), 1);
	assert_int_equal(beat, 123456789);
	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 223456789), 0);
	assert_int_equal(store_heartbeat_get(f->s, "otp-deleter", &beat), 1);
	assert_int_equal(beat, 223456789);
	assert_int_equal(store_heartbeat_get(f->s, "otp-fcgi", &beat), 0);
}

static void heartbeat_is_seen_by_another_handle(void **state)
{
	struct fixture *f = *state;
	struct store *s2 = open_second(f);
	int64_t beat = 0;

	assert_int_equal(store_heartbeat_set(f->s, "otp-deleter", 42424242), 0);
	assert_int_equal(store_heartbeat_get(s2, "otp-deleter", &beat), 1);
	assert_int_equal(beat, 42424242);
	store_close(s2);
}

/* ---- one clock for every host (Redis) ------------------------------------------------------ */

/* A handle on the fixture's key space that reads Redis's clock (without clock=host), as hosts
 * sharing a server do. */
static struct store *open_on_redis_clock(const struct fixture *f)
{
	char url[256], err[256] = "", *p;
	struct store *s;

	snprintf(url, sizeof url, "%s", f->path);
	if ((p = strstr(url, "&clock=host")) != NULL)
		memmove(p, p + 11, strlen(p + 11) + 1);
	s = store_open(url, err, sizeof err);
	if (s == NULL)
		print_error("store_open: %s\n", err);
	assert_non_null(s);
	return s;
}

/* A host whose clock runs an hour ahead writes a beat at Redis's now, not an hour ahead. */
static void redis_heartbeat_is_the_stores_now_whatever_the_hosts_clock(void **state)
{
	struct fixture *f = *state;
	struct store *s;
	int64_t beat = 0, now = clock_now_ms();

	if (!test_store_is_redis())
		skip();
	s = open_on_redis_clock(f);
	assert_int_equal(store_heartbeat_set(s, "otp-deleter", now + 3600000), 0);
	assert_int_equal(store_heartbeat_get(s, "otp-deleter", &beat), 1);
	assert_true(beat >= now - 2000 && beat <= clock_now_ms() + 2000);
	store_close(s);
}

/* Instants a host hands over are its now plus a duration: kept as Redis's now plus that
 * duration, and answered back on the host's clock. Asking for the rows due at an instant is
 * asking for those due within (instant - the host's now) on Redis's clock: at now, a row due in
 * 10 s is not among them; 11 s ahead (a stop that cannot wait for it), it is. */
static void redis_instants_are_durations_on_the_stores_clock(void **state)
{
	struct fixture *f = *state;
	struct store *s;
	struct pending p[2];
	int64_t now = clock_now_ms(), stored = 0, next = 0, until = 0;

	if (!test_store_is_redis())
		skip();
	s = open_on_redis_clock(f);
	assert_int_equal(test_pending_add(s, "77", 1, now + 10000, &stored), 0);
	assert_true(stored >= now + 10000 - 2000 && stored <= clock_now_ms() + 10000 + 2000);
	assert_int_equal(store_pending_next(s, &next), 1);
	assert_true(next >= stored - 2000 && next <= stored + 2000);
	assert_int_equal(store_pending_due(s, clock_now_ms(), p, 2), 0);
	assert_int_equal(store_pending_due(s, clock_now_ms() + 11000, p, 2), 1);
	assert_string_equal(p[0].chat_id, "77");
	assert_true(p[0].delete_at_ms >= stored - 2000 && p[0].delete_at_ms <= stored + 2000);
	assert_int_equal(store_pause_extend(s, "send", clock_now_ms() + 5000, "test"), 0);
	assert_int_equal(store_pause_get(s, "send", &until), 1);
	assert_true(until >= now + 5000 - 2000 && until <= clock_now_ms() + 5000 + 2000);
	store_close(s);
}

/* ---- the file going away ---------------------------------------------------------------- */

static void unlinked_file_is_reopened_on_the_next_call(void **state)
{
	struct fixture *f = *state;
	struct store *s2;
	struct pending p[4];
	struct stat st;
	int n, i, found = 0;

	SQLITE_ONLY();

	assert_int_equal(test_pending_add(f->s, "1", 1, 1000, NULL), 0);
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(test_pending_add(f->s, "2", 2, 2000, NULL), 0);
	assert_int_equal(stat(f->path, &st), 0);

	s2 = open_second(f);
	n = store_pending_due(s2, 10000, p, 4);
	for (i = 0; i < n; i++)
		if (strcmp(p[i].chat_id, "2") == 0 && p[i].message_id == 2)
			found = 1;
	assert_true(found);
	/* the row written before the unlink went with the old file */
	assert_int_equal(n, 1);
	assert_int_equal(store_pending_count(f->s), 1);
	store_close(s2);
}

static void unlinked_file_with_its_wal_is_reopened_empty(void **state)
{
	struct fixture *f = *state;
	struct store *s2;
	struct pending p[4];
	char aux[300];

	SQLITE_ONLY();

	assert_int_equal(test_pending_add(f->s, "1", 1, 1000, NULL), 0);
	assert_int_equal(unlink(f->path), 0);
	snprintf(aux, sizeof aux, "%s-wal", f->path);
	unlink(aux);
	snprintf(aux, sizeof aux, "%s-shm", f->path);
	unlink(aux);
	assert_int_equal(store_pending_count(f->s), 0);
	assert_int_equal(test_pending_add(f->s, "2", 2, 2000, NULL), 0);

	s2 = open_second(f);
	assert_int_equal(store_pending_due(s2, 10000, p, 4), 1);
	assert_string_equal(p[0].chat_id, "2");
	assert_int_equal(p[0].message_id, 2);
	store_close(s2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(open_creates_the_schema_and_a_second_open_works),
		T(open_in_a_missing_directory_fails_with_a_message),
		T(database_files_are_private),
		T(directory_writable_by_others_is_refused),
		T(directory_of_another_user_is_refused),
		T(pending_add_then_due_returns_the_row_at_its_time),
		T(pending_add_many_records_every_row),
		T(pending_add_many_fails_only_the_row_that_fails),
		T(pending_next_is_empty_then_the_earliest_try),
		T(pending_last_is_empty_then_the_latest_try_retries_included),
		T(pending_count_and_remove),
		T(pending_retry_increments_attempts_and_moves_the_next_try),
		T(pending_retry_is_never_earlier_than_delete_at),
		T(pending_due_is_earliest_first_and_respects_the_limit),
		T(redis_due_rows_are_claimed_until_the_lease_ends),
		T(rate_take_refuses_at_the_limit_naming_the_oldest_event),
		T(rate_release_and_prune_keep_the_counts_exact),
		T(rate_events_are_released_on_any_handle),
		T(rate_expired_events_are_dropped_before_they_could_refuse),
		T(rate_events_of_one_instant_count_one_by_one),
		T(rate_take_with_too_many_rules_fails),
		T(slots_are_spaced_and_refused_beyond_the_latest),
		T(a_queue_beyond_the_reset_bound_starts_again_from_now),
		T(a_heartbeat_out_of_bounds_takes_nothing),
		T(concurrent_takes_each_get_their_own_answer),
		T(a_full_rule_takes_no_slot_and_a_refused_slot_takes_no_event),
		T(pauses_are_per_kind_and_only_extended),
		T(heartbeat_absent_is_zero_then_set_and_get),
		T(heartbeat_is_seen_by_another_handle),
		T(redis_heartbeat_is_the_stores_now_whatever_the_hosts_clock),
		T(redis_instants_are_durations_on_the_stores_clock),
		T(unlinked_file_is_reopened_on_the_next_call),
		T(unlinked_file_with_its_wal_is_reopened_empty),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
