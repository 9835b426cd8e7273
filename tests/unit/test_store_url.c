/* test_store_url.c — OTP_STORE parsing: each scheme, defaults, and refusals that never quote
 * the URL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "store_url.h"

static struct store_url u;
static char err[256];

static int parse(const char *url)
{
	err[0] = '\0';
	return store_url_parse(url, &u, err, sizeof err);
}

static void a_plain_path_and_sqlite_urls_name_a_file(void **state)
{
	(void)state;
	assert_int_equal(parse("/run/otp-gateway/pending.db"), 0);
	assert_int_equal(u.kind, STORE_SQLITE);
	assert_string_equal(u.path, "/run/otp-gateway/pending.db");
	assert_int_equal(parse("sqlite:///dev/shm/x/pending.db"), 0);
	assert_int_equal(u.kind, STORE_SQLITE);
	assert_string_equal(u.path, "/dev/shm/x/pending.db");
	assert_int_equal(parse("sqlite://relative.db"), -1);
	assert_non_null(strstr(err, "absolute"));
}

static void redis_tcp_has_defaults_for_port_and_db(void **state)
{
	(void)state;
	assert_int_equal(parse("redis://10.0.0.5"), 0);
	assert_int_equal(u.kind, STORE_REDIS_TCP);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_int_equal(parse("redis://redis.internal:6380/3"), 0);
	assert_string_equal(u.host, "redis.internal");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 3);
	assert_int_equal(parse("redis://127.0.0.1:7000/"), 0);
	assert_int_equal(u.db, 0);
	assert_int_equal(parse("redis://[::1]:7001/2"), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7001);
	assert_int_equal(u.db, 2);
}

static void redis_unix_takes_a_socket_path_and_a_db_in_the_query(void **state)
{
	(void)state;
	assert_int_equal(parse("redis+unix:///run/redis/redis.sock"), 0);
	assert_int_equal(u.kind, STORE_REDIS_UNIX);
	assert_string_equal(u.path, "/run/redis/redis.sock");
	assert_int_equal(u.db, 0);
	assert_int_equal(parse("redis+unix:///run/redis/redis.sock?db=5&prefix=t1:"), 0);
	assert_string_equal(u.path, "/run/redis/redis.sock");
	assert_int_equal(u.db, 5);
	assert_string_equal(u.prefix, "t1:");
	assert_int_equal(parse("redis+unix://run/redis.sock"), -1);
}

static void a_password_in_the_url_is_refused_without_quoting_it(void **state)
{
	(void)state;
	assert_int_equal(parse("redis://:hunter2@10.0.0.5:6379/0"), -1);
	assert_non_null(strstr(err, "OTP_REDIS_PASSWORD_FILE"));
	assert_null(strstr(err, "hunter2"));
	assert_int_equal(parse("redis://user:s3cret@host"), -1);
	assert_null(strstr(err, "s3cret"));
}

static void bad_ports_dbs_schemes_and_queries_are_refused(void **state)
{
	(void)state;
	assert_int_equal(parse("redis://host:0"), -1);
	assert_int_equal(parse("redis://host:65536"), -1);
	assert_int_equal(parse("redis://host:12ab"), -1);
	assert_int_equal(parse("redis://host:"), -1);
	assert_int_equal(parse("redis://host/-1"), -1);
	assert_int_equal(parse("redis://host/x"), -1);
	assert_int_equal(parse("redis://:6379"), -1);
	assert_int_equal(parse("redis://[::1"), -1);
	assert_int_equal(parse("redis://host?timeout=1"), -1);
	assert_int_equal(parse("redis://host?db=1"), -1); /* TCP names its db in the path */
	assert_int_equal(parse("memcached://host"), -1);
	assert_non_null(strstr(err, "unknown scheme"));
	assert_int_equal(parse(""), -1);
	assert_true(store_url_is_redis("redis://h"));
	assert_true(store_url_is_redis("redis+unix:///s"));
	assert_false(store_url_is_redis("sqlite:///x"));
}

static void the_clock_is_redis_unless_the_url_says_host(void **state)
{
	(void)state;
	assert_int_equal(parse("redis://127.0.0.1"), 0);
	assert_int_equal(u.clock_host, 0);
	assert_int_equal(parse("redis://127.0.0.1/0?prefix=t:&clock=host"), 0);
	assert_int_equal(u.clock_host, 1);
	assert_int_equal(parse("redis+unix:///r.sock?clock=redis"), 0);
	assert_int_equal(u.clock_host, 0);
	assert_int_equal(parse("redis://127.0.0.1?clock=hosts"), -1);
	assert_non_null(strstr(err, "clock"));
}

static void redis_sentinel_names_the_sentinels_and_the_master(void **state)
{
	(void)state;
	assert_int_equal(parse("redis+sentinel://10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster"), 0);
	assert_int_equal(u.kind, STORE_REDIS_SENTINEL);
	assert_int_equal(u.nsentinels, 3);
	assert_string_equal(u.sentinels[0].host, "10.0.0.1");
	assert_int_equal(u.sentinels[0].port, 26379);
	assert_string_equal(u.sentinels[1].host, "10.0.0.2");
	assert_int_equal(u.sentinels[1].port, 26379);
	assert_string_equal(u.sentinels[2].host, "::1");
	assert_int_equal(u.sentinels[2].port, 26380);
	assert_string_equal(u.master, "mymaster");
	assert_int_equal(u.db, 0);
	assert_true(store_url_is_redis("redis+sentinel://h/m"));

	assert_int_equal(parse("redis+sentinel://s1:1,s2:2/otp-primary.1/7?prefix=t:&clock=host"), 0);
	assert_int_equal(u.nsentinels, 2);
	assert_string_equal(u.master, "otp-primary.1");
	assert_int_equal(u.db, 7);
	assert_string_equal(u.prefix, "t:");
	assert_int_equal(u.clock_host, 1);
	assert_int_equal(parse("redis+sentinel://s1/m/"), 0);
	assert_int_equal(u.db, 0);
}

static void redis_sentinel_urls_without_sentinels_or_master_are_refused(void **state)
{
	(void)state;
	assert_int_equal(parse("redis+sentinel://h1:26379"), -1); /* no master name */
	assert_non_null(strstr(err, "master"));
	assert_int_equal(parse("redis+sentinel://h1:26379/"), -1);
	assert_int_equal(parse("redis+sentinel:///mymaster"), -1);
	assert_non_null(strstr(err, "sentinel"));
	assert_int_equal(parse("redis+sentinel://h1,,h2/m"), -1);
	assert_int_equal(parse("redis+sentinel://h1,/m"), -1);
	assert_int_equal(parse("redis+sentinel://h1:0/m"), -1);
	assert_int_equal(parse("redis+sentinel://h1/my master"), -1);
	assert_int_equal(parse("redis+sentinel://h1/m/x"), -1);
	assert_int_equal(parse("redis+sentinel://h1/m/65536"), -1);
	assert_int_equal(parse("redis+sentinel://h1/m?db=2"), -1); /* the db is in the path */
	assert_int_equal(parse("redis+sentinel://a,b,c,d,e,f,g,h,i/m"), -1);
	assert_non_null(strstr(err, "8 sentinels"));
	assert_int_equal(parse("redis+sentinel://a,b,c,d,e,f,g,h/m"), 0);
	/* a password in any sentinel's address is refused without being quoted */
	assert_int_equal(parse("redis+sentinel://h1,:hunter2@h2/m"), -1);
	assert_non_null(strstr(err, "PASSWORD_FILE"));
	assert_null(strstr(err, "hunter2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_plain_path_and_sqlite_urls_name_a_file),
		cmocka_unit_test(redis_tcp_has_defaults_for_port_and_db),
		cmocka_unit_test(redis_unix_takes_a_socket_path_and_a_db_in_the_query),
		cmocka_unit_test(a_password_in_the_url_is_refused_without_quoting_it),
		cmocka_unit_test(bad_ports_dbs_schemes_and_queries_are_refused),
		cmocka_unit_test(the_clock_is_redis_unless_the_url_says_host),
		cmocka_unit_test(redis_sentinel_names_the_sentinels_and_the_master),
		cmocka_unit_test(redis_sentinel_urls_without_sentinels_or_master_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
