/* test_store_ops.c — the store's seam (store_backend.h): each backend's method table is
 * complete (store.c calls every entry unchecked), and what a backend can do is told by its
 * flags, for a handle and for a URL before anything is opened. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "store_backend.h"
#include "store_url.h"

typedef void (*method)(void);

/* Every method of ops is set: they come last in struct store_ops, from open on, so the table is
 * walked as an array of function pointers from there to its end. */
static void assert_complete(const struct store_ops *ops)
{
	const unsigned char *p = (const unsigned char *)ops + offsetof(struct store_ops, open);
	const unsigned char *end = (const unsigned char *)ops + sizeof *ops;
	size_t n = 0;
	method m;

	for (; p + sizeof m <= end; p += sizeof m, n++) {
		memcpy(&m, p, sizeof m);
		if (m == NULL)
			fail_msg("method %zu (counting from open) is NULL", n);
	}
	/* the walk saw every method: open, close, and the rest up to heartbeat_get */
	assert_int_equal(offsetof(struct store_ops, heartbeat_get),
			 offsetof(struct store_ops, open) + (n - 1) * sizeof m);
	assert_true(n > 20);
}

static void both_tables_set_every_method(void **state)
{
	(void)state;
	assert_complete(&sqlite_store_ops);
	assert_complete(&redis_store_ops);
}

/* Only Redis is shared by several hosts (leases, no lock file, "unreachable" rather than
 * "unwritable"); callers ask the flag, never the backend's name. */
static void only_the_redis_store_is_shared_by_hosts(void **state)
{
	struct store_url u;
	char err[256];

	(void)state;
	assert_false(sqlite_store_ops.shared_by_hosts);
	assert_true(redis_store_ops.shared_by_hosts);
	assert_int_equal(store_url_parse("/run/otp-gateway/pending.db", &u, err, sizeof err), 0);
	assert_false(store_url_is_shared(&u));
	assert_int_equal(store_url_parse("sqlite:///dev/shm/x/pending.db", &u, err, sizeof err), 0);
	assert_false(store_url_is_shared(&u));
	assert_int_equal(store_url_parse("redis://127.0.0.1:6379/0", &u, err, sizeof err), 0);
	assert_true(store_url_is_shared(&u));
	assert_int_equal(store_url_parse("redis+unix:///run/redis.sock", &u, err, sizeof err), 0);
	assert_true(store_url_is_shared(&u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(both_tables_set_every_method),
		cmocka_unit_test(only_the_redis_store_is_shared_by_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
