/* Unit tests for fcgi/recorder.c: rows handed in by many threads at once are all recorded, each
 * thread told its own row's outcome: a row the store refuses fails alone, and when no store can
 * be had every row fails with the reason. Runs on the store the fixture names (SQLite, or Redis
 * with OTP_TEST_REDIS). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "recorder.h"
#include "store_fixture.h"
#include "store_pool.h"

#define THREADS 16
#define ROWS_EACH 25

struct fixture {
	char dir[64];
	char url[256];
	struct store_config config;
	struct store_pool *pool;
	struct recorder *rec;
	struct store *s; /* the test's own, to look at what was written */
};

struct thread_arg {
	struct fixture *f;
	int first;       /* message ids first .. first + ROWS_EACH - 1 */
	int failed[ROWS_EACH];
	char err[ROWS_EACH][256];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-recorder-test-XXXXXX");
	f->s = test_store_open_temp(f->dir, f->url, sizeof f->url);
	if (f->s == NULL) {
		free(f);
		return -1;
	}
	f->config.url = f->url;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	recorder_free(f->rec);
	store_pool_free(f->pool);
	store_close(f->s);
	remove_dir(f->dir);
	free(f);
	return 0;
}

static void start(struct fixture *f, const struct store_config *c)
{
	f->pool = store_pool_new(c, 4);
	assert_non_null(f->pool);
	f->rec = recorder_new(f->pool);
	assert_non_null(f->rec);
}

static void *add_rows(void *p)
{
	struct thread_arg *a = p;
	struct store_pending_row row;
	int i;

	for (i = 0; i < ROWS_EACH; i++) {
		memset(&row, 0, sizeof row);
		row.ref = (struct pending_ref){ "42", "42", a->first + i, NULL };
		row.delete_at_ms = 1000 + a->first + i;
		a->failed[i] = recorder_add(a->f->rec, &row, a->err[i], sizeof a->err[i]) != 0;
		if (!a->failed[i] && row.stored_ms != row.delete_at_ms)
			a->failed[i] = 2; /* answered for another row */
	}
	return NULL;
}

/* Runs THREADS threads adding ROWS_EACH rows each; message ids from 1. */
static void run_threads(struct fixture *f, struct thread_arg *args)
{
	pthread_t t[THREADS];
	int i;

	for (i = 0; i < THREADS; i++) {
		args[i].f = f;
		args[i].first = 1 + i * ROWS_EACH;
		assert_int_equal(pthread_create(&t[i], NULL, add_rows, &args[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

static void every_row_of_many_threads_is_recorded(void **state)
{
	struct fixture *f = *state;
	struct thread_arg *args = calloc(THREADS, sizeof *args);
	struct pending p[1];
	int i, j;

	assert_non_null(args);
	start(f, &f->config);
	run_threads(f, args);
	for (i = 0; i < THREADS; i++)
		for (j = 0; j < ROWS_EACH; j++)
			assert_int_equal(args[i].failed[j], 0);
	assert_int_equal(store_pending_count(f->s), THREADS * ROWS_EACH);
	/* each row as it was handed in: the last message is due at its own instant */
	assert_int_equal(store_pending_due(f->s, 1000 + THREADS * ROWS_EACH - 1, p, 1), 1);
	assert_int_equal(store_pending_due(f->s, 1000, p, 1), 0);
	free(args);
}

static void a_row_the_store_refuses_fails_alone(void **state)
{
	struct fixture *f = *state;
	struct thread_arg *args;
	int i, j, failed = 0;

	SQLITE_ONLY(); /* Redis records the same message twice without a word */
	args = calloc(THREADS, sizeof *args);
	assert_non_null(args);
	assert_int_equal(test_pending_add(f->s, "42", 7, 1000, NULL), 0); /* thread 0's 7th */
	start(f, &f->config);
	run_threads(f, args);
	for (i = 0; i < THREADS; i++)
		for (j = 0; j < ROWS_EACH; j++)
			if (args[i].failed[j]) {
				assert_int_equal(args[i].first + j, 7);
				assert_int_equal(args[i].failed[j], 1);
				assert_non_null(strstr(args[i].err[j], "UNIQUE"));
				failed++;
			}
	assert_int_equal(failed, 1);
	assert_int_equal(store_pending_count(f->s), THREADS * ROWS_EACH);
	free(args);
}

static void with_no_store_every_row_fails_with_the_reason(void **state)
{
	struct fixture *f = *state;
	struct store_config bad = { .url = "redis://?prefix=" }; /* refused by the URL parser */
	struct thread_arg *args = calloc(THREADS, sizeof *args);
	int i, j;

	assert_non_null(args);
	start(f, &bad);
	run_threads(f, args);
	for (i = 0; i < THREADS; i++)
		for (j = 0; j < ROWS_EACH; j++) {
			assert_int_equal(args[i].failed[j], 1);
			assert_true(args[i].err[j][0] != '\0');
		}
	assert_int_equal(store_pending_count(f->s), 0);
	free(args);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(every_row_of_many_threads_is_recorded),
		T(a_row_the_store_refuses_fails_alone),
		T(with_no_store_every_row_fails_with_the_reason),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
