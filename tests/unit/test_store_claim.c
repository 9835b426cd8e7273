/* test_store_claim.c — test_pending_claim() and store_pending_release() (POST /revoke-otp)
 * against a real SQLite file: a claimed row is out of otp-deleter's reach until its lease ends,
 * a due row is left to otp-deleter, a released row is due at once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "store.h"
#include "store_backend.h"
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
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-claim-test-XXXXXX");
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

/* The rows otp-deleter would fetch at t. */
static int due_at(struct store *s, int64_t t, struct pending *p, int max)
{
	int n = store_pending_due(s, t, p, max);

	assert_true(n >= 0);
	return n;
}

static void claim_takes_a_future_row_out_of_the_deleters_reach_until_the_lease_ends(void **state)
{
	struct fixture *f = *state;
	struct pending row, p[4];
	int64_t now = clock_now_ms(), before, after;

	assert_int_equal(test_pending_add(f->s, "100", 7, now + 30000, NULL), 0);
	before = clock_now_ms();
	assert_int_equal(test_pending_claim(f->s, "100", 7, 10000, &row), STORE_CLAIM_TAKEN);
	after = clock_now_ms();
	assert_string_equal(row.chat_id, "100");
	assert_int_equal(row.message_id, 7);
	assert_true(row.delete_at_ms >= before && row.delete_at_ms <= after);
	assert_int_equal(row.next_try_ms, row.delete_at_ms + 10000);

	/* the deleter sees nothing until the lease ends, then the row (due since the claim) */
	assert_int_equal(due_at(f->s, after + 9000, p, 4), 0);
	assert_int_equal(due_at(f->s, row.next_try_ms, p, 4), 1);
	assert_int_equal(p[0].id, row.id);
	assert_int_equal(p[0].delete_at_ms, row.delete_at_ms);
}

static void a_claimed_row_cannot_be_claimed_again(void **state)
{
	struct fixture *f = *state;
	struct pending row, again;

	assert_int_equal(test_pending_add(f->s, "100", 7, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 10000, &row), STORE_CLAIM_TAKEN);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 10000, &again), STORE_CLAIM_DUE);
	assert_int_equal(again.id, row.id);
	assert_int_equal(again.next_try_ms, row.next_try_ms); /* left as it was */
}

static void unknown_message_and_another_chats_message_are_not_found(void **state)
{
	struct fixture *f = *state;
	struct pending row;
	int64_t later = clock_now_ms() + 30000;

	assert_int_equal(test_pending_add(f->s, "100", 7, later, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "200", 8, later, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 8, 10000, &row), STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim(f->s, "200", 7, 10000, &row), STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim(f->s, "1000", 7, 10000, &row), STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim(f->s, "-100", 7, 10000, &row), STORE_CLAIM_NONE);
	/* nothing was touched */
	assert_int_equal(store_pending_count(f->s), 2);
	assert_int_equal(store_pending_next(f->s, &later), 1);
}

static void a_username_matches_whatever_its_case(void **state)
{
	struct fixture *f = *state;
	struct pending row;

	assert_int_equal(test_pending_add(f->s, "@My_Channel", 3, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "@my_channel", 4, 10000, &row), STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim(f->s, "@my_channel", 3, 10000, &row), STORE_CLAIM_TAKEN);
	assert_string_equal(row.chat_id, "@My_Channel"); /* as stored: the Bot API call uses it */
}

/* A code is the business of the key that sent it: another key, or none, finds nothing and
 * touches nothing, as for an unknown message. */
static void another_owners_row_is_not_found(void **state)
{
	struct fixture *f = *state;
	struct pending row;
	int64_t later = clock_now_ms() + 30000;

	assert_int_equal(test_pending_add_owned(f->s, "100", 7, "shop", later, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "100", 8, later, NULL), 0);
	assert_int_equal(test_pending_claim_owned(f->s, "100", 7, "forum", 10000, &row),
			 STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 10000, &row), STORE_CLAIM_NONE);
	assert_int_equal(test_pending_claim_owned(f->s, "100", 8, "shop", 10000, &row),
			 STORE_CLAIM_NONE);
	assert_int_equal(store_pending_next(f->s, &row.next_try_ms), 1);
	assert_int_equal(row.next_try_ms, later); /* nothing was claimed */
	assert_int_equal(test_pending_claim_owned(f->s, "100", 7, "shop", 10000, &row),
			 STORE_CLAIM_TAKEN);
	assert_int_equal(row.message_id, 7);
	assert_int_equal(test_pending_claim(f->s, "100", 8, 10000, &row), STORE_CLAIM_TAKEN);
	assert_int_equal(row.message_id, 8);
}

static void plan_detail(void *ctx, int ncol, char **val, char **name)
{
	char *plan = ctx;
	int i;

	for (i = 0; i < ncol; i++)
		if (strcmp(name[i], "detail") == 0 && val[i] != NULL)
			snprintf(plan + strlen(plan), 1024 - strlen(plan), "%s;", val[i]);
}

static int plan_row(void *ctx, int ncol, char **val, char **name)
{
	plan_detail(ctx, ncol, val, name);
	return 0;
}

/* The claim runs inside BEGIN IMMEDIATE: it must look its row up in an index, never scan the
 * table while every other writer waits. */
static void the_claim_looks_up_the_chat_key_index_and_scans_nothing(void **state)
{
	struct fixture *f = *state;
	char sql[1024], plan[1024] = "";
	sqlite3 *db;

	SQLITE_ONLY();
	assert_int_equal(test_pending_add(f->s, "@Chan", 1, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", sqlite_store_claim_find_sql);
	assert_int_equal(sqlite3_exec(db, sql, plan_row, plan, NULL), SQLITE_OK);
	sqlite3_close(db);
	print_message("plan: %s\n", plan);
	assert_non_null(strstr(plan, "USING INDEX pending_deletions_by_chat_key (chat_key=? AND "
				     "message_id=?)"));
	assert_null(strstr(plan, "SCAN"));
	assert_null(strstr(plan, "TEMP B-TREE"));
}

static void a_row_due_now_or_within_the_margin_is_left_to_the_deleter(void **state)
{
	struct fixture *f = *state;
	struct pending row;
	int64_t now = clock_now_ms(), next = 0;

	assert_int_equal(test_pending_add(f->s, "100", 1, now - 5, NULL), 0);
	assert_int_equal(test_pending_add(f->s, "100", 2, now + POLICY_CLAIM_MARGIN_MS / 2, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 1, 10000, &row), STORE_CLAIM_DUE);
	assert_int_equal(row.next_try_ms, now - 5);
	assert_int_equal(test_pending_claim(f->s, "100", 2, 10000, &row), STORE_CLAIM_DUE);
	assert_int_equal(store_pending_next(f->s, &next), 1);
	assert_int_equal(next, now - 5); /* untouched */
}

static void a_zero_lease_hands_the_row_to_the_deleter_at_once(void **state)
{
	struct fixture *f = *state;
	struct pending row, p[4];
	int64_t after;

	assert_int_equal(test_pending_add(f->s, "100", 7, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 0, &row), STORE_CLAIM_TAKEN);
	after = clock_now_ms();
	assert_int_equal(due_at(f->s, after, p, 4), 1);
	assert_int_equal(p[0].message_id, 7);
}

static void release_makes_a_claimed_row_due_now(void **state)
{
	struct fixture *f = *state;
	struct pending row, p[4];
	int64_t t;

	assert_int_equal(test_pending_add(f->s, "100", 7, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 60000, &row), STORE_CLAIM_TAKEN);
	t = clock_now_ms();
	assert_int_equal(due_at(f->s, t, p, 4), 0);
	assert_int_equal(store_pending_release(f->s, row.id, t), 0);
	assert_int_equal(due_at(f->s, t, p, 4), 1);
	assert_int_equal(p[0].next_try_ms, t);
	assert_int_equal(p[0].attempts, 0);
}

static void release_never_moves_a_row_later_nor_fails_on_a_gone_row(void **state)
{
	struct fixture *f = *state;
	struct pending row;
	int64_t next = 0;

	assert_int_equal(test_pending_add(f->s, "100", 7, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 0, &row), STORE_CLAIM_TAKEN);
	/* the lease is over (otp-deleter may have it): a late release leaves it alone */
	assert_int_equal(store_pending_release(f->s, row.id, row.next_try_ms + 5000), 0);
	assert_int_equal(store_pending_next(f->s, &next), 1);
	assert_int_equal(next, row.next_try_ms);
	assert_int_equal(store_pending_remove(f->s, row.id), 0);
	assert_int_equal(store_pending_release(f->s, row.id, clock_now_ms()), 0);
	assert_int_equal(store_pending_count(f->s), 0);
}

static void a_claim_is_seen_by_another_handle(void **state)
{
	struct fixture *f = *state;
	struct pending row, p[4];
	char err[256] = "";
	struct store *s2 = store_open(f->path, err, sizeof err);

	assert_non_null(s2);
	assert_int_equal(test_pending_add(f->s, "100", 7, clock_now_ms() + 30000, NULL), 0);
	assert_int_equal(test_pending_claim(s2, "100", 7, 60000, &row), STORE_CLAIM_TAKEN);
	assert_int_equal(test_pending_claim(f->s, "100", 7, 60000, &row), STORE_CLAIM_DUE);
	assert_int_equal(due_at(f->s, clock_now_ms() + 30000, p, 4), 0);
	store_close(s2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(claim_takes_a_future_row_out_of_the_deleters_reach_until_the_lease_ends),
		T(a_claimed_row_cannot_be_claimed_again),
		T(unknown_message_and_another_chats_message_are_not_found),
		T(a_username_matches_whatever_its_case),
		T(another_owners_row_is_not_found),
		T(the_claim_looks_up_the_chat_key_index_and_scans_nothing),
		T(a_row_due_now_or_within_the_margin_is_left_to_the_deleter),
		T(a_zero_lease_hands_the_row_to_the_deleter_at_once),
		T(release_makes_a_claimed_row_due_now),
		T(release_never_moves_a_row_later_nor_fails_on_a_gone_row),
		T(a_claim_is_seen_by_another_handle),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
