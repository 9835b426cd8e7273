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

#include "clock.h"
#include "policy.h"
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

/* store_pending_add() as otp-fcgi calls it: the chat key is policy's, owner may be NULL. */
static inline int test_pending_add_owned(struct store *s, const char *chat_id, long long message_id,
					 const char *owner, int64_t delete_at_ms, int64_t *stored_ms)
{
	char key[STORE_CHAT_ID_MAX];
	struct pending_ref ref = { chat_id, key, message_id, owner };

	if (policy_chat_subject(chat_id, key, sizeof key) != 0)
		return -1;
	return store_pending_add(s, &ref, delete_at_ms, stored_ms);
}

static inline int test_pending_add(struct store *s, const char *chat_id, long long message_id,
				   int64_t delete_at_ms, int64_t *stored_ms)
{
	return test_pending_add_owned(s, chat_id, message_id, NULL, delete_at_ms, stored_ms);
}

/* store_pending_claim() as POST /revoke-otp calls it, now. */
static inline int test_pending_claim_owned(struct store *s, const char *chat_id,
					   long long message_id, const char *owner,
					   int64_t lease_ms, struct pending *out)
{
	const struct store_claim_request claim = policy_claim_request(clock_now_ms(), lease_ms);
	char key[STORE_CHAT_ID_MAX];
	struct pending_ref ref = { chat_id, key, message_id, owner };

	if (policy_chat_subject(chat_id, key, sizeof key) != 0)
		return -1;
	return store_pending_claim(s, &ref, &claim, out);
}

static inline int test_pending_claim(struct store *s, const char *chat_id, long long message_id,
				     int64_t lease_ms, struct pending *out)
{
	return test_pending_claim_owned(s, chat_id, message_id, NULL, lease_ms, out);
}

/* Skips a test that checks what only the SQLite backend has (its file). */
#define SQLITE_ONLY()                                                                              \
	do {                                                                                       \
		if (test_store_is_redis())                                                         \
			skip();                                                                    \
	} while (0)

#endif
