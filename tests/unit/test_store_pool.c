/* Unit tests for fcgi/store_pool.c: stores are reused, never more than max_open are open, a
 * taker waits for one given back, and a store that cannot be opened takes no place. Runs on
 * the store the fixture names (SQLite, or Redis with OTP_TEST_REDIS). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "store_fixture.h"
#include "store_pool.h"

struct fixture {
	char dir[64];
	char url[256];
	struct store_config config;
	struct store_pool *pool;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct store *s;

	if (f == NULL)
		return -1;
	/* a store opened once here creates the file (or checks the server) */
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-pool-test-XXXXXX");
	s = test_store_open_temp(f->dir, f->url, sizeof f->url);
	if (s == NULL) {
		free(f);
		return -1;
	}
	store_close(s);
	f->config.url = f->url;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_pool_free(f->pool);
	remove_dir(f->dir);
	free(f);
	return 0;
}

static struct store *take(struct fixture *f)
{
	char err[256] = "";
	struct store *s = store_pool_take(f->pool, err, sizeof err);

	if (s == NULL)
		print_error("store_pool_take: %s\n", err);
	assert_non_null(s);
	return s;
}

static void a_store_given_back_is_taken_again(void **state)
{
	struct fixture *f = *state;
	struct store *a, *b;
	int64_t beat = 0;

	f->pool = store_pool_new(&f->config, 4);
	assert_non_null(f->pool);
	assert_int_equal(store_pool_open_count(f->pool), 0);
	a = take(f);
	assert_int_equal(store_heartbeat_set(a, "pool-test", 1234), 0);
	store_pool_give(f->pool, a);
	b = take(f);
	assert_ptr_equal(a, b);
	assert_int_equal(store_heartbeat_get(b, "pool-test", &beat), 1);
	assert_int_equal(beat, 1234);
	assert_int_equal(store_pool_open_count(f->pool), 1);
	store_pool_give(f->pool, b);
	store_pool_give(f->pool, NULL); /* nothing */
	assert_int_equal(store_pool_open_count(f->pool), 1);
}

struct taker {
	struct fixture *f;
	struct store *got;
	atomic_int done;
};

static void *take_in_thread(void *arg)
{
	struct taker *t = arg;
	char err[256];

	t->got = store_pool_take(t->f->pool, err, sizeof err);
	atomic_store(&t->done, 1);
	return NULL;
}

static int wait_done(struct taker *t, int64_t ms)
{
	int64_t deadline = clock_mono_ms() + ms;

	while (!atomic_load(&t->done) && clock_mono_ms() < deadline)
		clock_sleep_ms(5);
	return atomic_load(&t->done);
}

static void no_more_than_max_open_a_taker_waits_for_one_given_back(void **state)
{
	struct fixture *f = *state;
	struct taker t = { .f = f };
	struct store *a, *b;
	pthread_t tid;

	f->pool = store_pool_new(&f->config, 2);
	a = take(f);
	b = take(f);
	assert_ptr_not_equal(a, b);
	assert_int_equal(store_pool_open_count(f->pool), 2);
	assert_int_equal(pthread_create(&tid, NULL, take_in_thread, &t), 0);
	/* both are taken: the third taker must still be waiting a while later */
	assert_false(wait_done(&t, 200));
	assert_int_equal(store_pool_open_count(f->pool), 2);
	store_pool_give(f->pool, b);
	assert_true(wait_done(&t, 5000));
	pthread_join(tid, NULL);
	assert_ptr_equal(t.got, b);
	assert_int_equal(store_pool_open_count(f->pool), 2);
	store_pool_give(f->pool, a);
	store_pool_give(f->pool, t.got);
}

static void a_store_that_cannot_be_opened_takes_no_place(void **state)
{
	struct fixture *f = *state;
	struct store_config bad = { .url = "redis://?prefix=" }; /* refused by the URL parser */
	char err[256] = "";

	f->pool = store_pool_new(&bad, 1);
	assert_null(store_pool_take(f->pool, err, sizeof err));
	assert_true(err[0] != '\0');
	assert_int_equal(store_pool_open_count(f->pool), 0);
	/* the failed opening freed its place: a second taker does not wait for ever */
	err[0] = '\0';
	assert_null(store_pool_take(f->pool, err, sizeof err));
	assert_true(err[0] != '\0');
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(a_store_given_back_is_taken_again),
		T(no_more_than_max_open_a_taker_waits_for_one_given_back),
		T(a_store_that_cannot_be_opened_takes_no_place),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
