/* store_fixture.h — where a store unit test keeps its store: a SQLite file in the test's scratch
 * directory, or, when OTP_TEST_REDIS names a Redis server (tests/run-tests.sh starts one and runs
 * the store's tests again), a key prefix of its own on that server, so that the same tests check
 * both backends. */
#ifndef OTP_TEST_STORE_FIXTURE_H
#define OTP_TEST_STORE_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"
#include "tmpdir.h"

/* 1 when the tests run against Redis. */
static inline int test_store_is_redis(void)
{
	const char *r = getenv("OTP_TEST_REDIS");

	return r != NULL && r[0] != '\0';
}

/* The store's URL for a test whose scratch directory is dir: a fresh key prefix per call. The
 * tests set the time themselves (instants such as 1000 ms): Redis takes them as given
 * (clock=host) rather than reading its own clock; tests of the store's clock open without it. */
static inline void test_store_url(char *out, size_t outlen, const char *dir)
{
	static int n;

	if (test_store_is_redis())
		snprintf(out, outlen, "%s?prefix=t%d-%d:&clock=host", getenv("OTP_TEST_REDIS"), (int)getpid(),
			 ++n);
	else
		snprintf(out, outlen, "%s/pending.db", dir);
}

/* A scratch directory from template (…XXXXXX, rewritten in place) and a store in it (or under a
 * fresh Redis prefix), its URL in path. Returns the store, or NULL (reported, nothing left). */
static inline struct store *test_store_open_temp(char *template, char *path, size_t pathlen)
{
	char err[256] = "";
	struct store *s;

	if (mkdtemp(template) == NULL)
		return NULL;
	test_store_url(path, pathlen, template);
	s = store_open(path, err, sizeof err);
	if (s == NULL) {
		print_error("store_open: %s\n", err);
		remove_dir(template);
	}
	return s;
}

/* Skips a test that checks what only the SQLite backend has (its file). */
#define SQLITE_ONLY()                                                                              \
	do {                                                                                       \
		if (test_store_is_redis())                                                         \
			skip();                                                                    \
	} while (0)

#endif
