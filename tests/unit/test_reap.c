/* test_reap.c — deleter/reap.h: what a deletion answer means for its row, and the retry delay. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "app.h"
#include "reap.h"
#include "store.h"
#include "tg.h"

static enum reap_outcome classify(enum tg_status st, int error_code)
{
	struct tg_result res;

	memset(&res, 0, sizeof res);
	res.status = st;
	res.error_code = error_code;
	res.http_status = error_code;
	return reap_classify(&res);
}

/* ---- reap_classify ---------------------------------------------------------------------- */

static void ok_is_done(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_OK, 0), REAP_DONE);
}

static void not_found_is_done(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_NOT_FOUND, 400), REAP_DONE);
}

static void refused_400_and_403_are_permanent(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_REFUSED, 400), REAP_PERMANENT);
	assert_int_equal(classify(TG_REFUSED, 403), REAP_PERMANENT);
}

static void refused_401_and_404_are_retried(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_REFUSED, 401), REAP_RETRY);
	assert_int_equal(classify(TG_REFUSED, 404), REAP_RETRY);
}

static void transient_failures_are_retried(void **state)
{
	(void)state;
	assert_int_equal(classify(TG_RETRY_AFTER, 429), REAP_RETRY);
	assert_int_equal(classify(TG_SERVER_ERROR, 502), REAP_RETRY);
	assert_int_equal(classify(TG_SERVER_ERROR, 0), REAP_RETRY);
	assert_int_equal(classify(TG_TIMEOUT, 0), REAP_RETRY);
	assert_int_equal(classify(TG_UNREACHABLE, 0), REAP_RETRY);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
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

	return cmocka_run_group_tests(tests, NULL, NULL);
}
