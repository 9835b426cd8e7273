/* test_redis_sentinel.c — the replies Redis Sentinel discovery believes (redis_sentinel.h):
 * SENTINEL get-master-addr-by-name's and ROLE's, written as a server sends them (RESP) and read
 * by hiredis's reader with our bounds; each shape is taken and anything else refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "redis_sentinel.h"
#include "store_redis_reply.h"

static redisReader *reader;

/* The one reply resp holds (the reader must accept it). */
static redisReply *read_reply(const char *resp, size_t len)
{
	void *r = NULL;

	redisReaderFree(reader);
	reader = redisReaderCreate();
	assert_non_null(reader);
	assert_int_equal(redis_reply_limit(reader), 0);
	assert_int_equal(redisReaderFeed(reader, resp, len), REDIS_OK);
	assert_int_equal(redisReaderGetReply(reader, &r), REDIS_OK);
	assert_non_null(r);
	return r;
}

static int addr(const char *resp, size_t len, struct redis_sentinel_primary *p, int *known)
{
	redisReply *r = read_reply(resp, len);
	const char *why = NULL;
	int rc = redis_sentinel_reply_addr(r, p, known, &why);

	if (rc != 0)
		assert_non_null(why);
	freeReplyObject(r);
	return rc;
}

static int role(const char *resp, size_t len, int *primary, int *replicas)
{
	redisReply *r = read_reply(resp, len);
	const char *why = NULL;
	int rc = redis_sentinel_reply_role(r, primary, replicas, &why);

	if (rc != 0)
		assert_non_null(why);
	freeReplyObject(r);
	return rc;
}

#define ADDR(lit, p, k) addr(lit, sizeof lit - 1, p, k)
#define ROLE(lit, p, n) role(lit, sizeof lit - 1, p, n)

static void a_sentinel_names_a_host_and_a_port_or_nothing(void **state)
{
	struct redis_sentinel_primary p;
	int known;

	(void)state;
	assert_int_equal(ADDR("*2\r\n$8\r\n10.0.0.7\r\n$4\r\n6380\r\n", &p, &known), 0);
	assert_int_equal(known, 1);
	assert_string_equal(p.host, "10.0.0.7");
	assert_int_equal(p.port, 6380);
	assert_int_equal(ADDR("*2\r\n$7\r\nfe80::1\r\n$4\r\n6379\r\n", &p, &known), 0);
	assert_string_equal(p.host, "fe80::1");
	assert_int_equal(ADDR("*2\r\n$14\r\nredis-b.local_\r\n:6379\r\n", &p, &known), 0);
	assert_int_equal(ADDR("*-1\r\n", &p, &known), 0); /* the master is unknown: nil */
	assert_int_equal(known, 0);
	assert_int_equal(ADDR("$-1\r\n", &p, &known), 0);
	assert_int_equal(known, 0);
}

static void anything_else_a_sentinel_says_is_refused(void **state)
{
	struct redis_sentinel_primary p;
	int known;

	(void)state;
	assert_int_equal(ADDR("*1\r\n$8\r\n10.0.0.7\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*3\r\n$1\r\na\r\n$4\r\n6380\r\n$1\r\nx\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$8\r\n10.0.0.7\r\n$5\r\n65536\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$8\r\n10.0.0.7\r\n$1\r\n0\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$8\r\n10.0.0.7\r\n$3\r\n1e3\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$0\r\n\r\n$4\r\n6380\r\n", &p, &known), -1);
	/* a host that a log line or a resolver could misread */
	assert_int_equal(ADDR("*2\r\n$10\r\n10.0.0.7 x\r\n$4\r\n6380\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$9\r\n10.0.0\n7x\r\n$4\r\n6380\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n$3\r\na\0b\r\n$4\r\n6380\r\n", &p, &known), -1);
	assert_int_equal(ADDR("*2\r\n*0\r\n$4\r\n6380\r\n", &p, &known), -1);
	assert_int_equal(ADDR("+OK\r\n", &p, &known), -1);
	assert_int_equal(ADDR(":1\r\n", &p, &known), -1);
}

static void role_tells_a_primary_and_its_replicas_from_a_replica(void **state)
{
	int primary = -1, replicas = -1;

	(void)state;
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:3129\r\n*2\r\n"
			      "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6381\r\n$4\r\n3129\r\n"
			      "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6382\r\n$4\r\n3000\r\n",
			      &primary, &replicas), 0);
	assert_int_equal(primary, 1);
	assert_int_equal(replicas, 2);
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", &primary, &replicas), 0);
	assert_int_equal(primary, 1);
	assert_int_equal(replicas, 0);
	assert_int_equal(ROLE("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n"
			      ":3129\r\n", &primary, &replicas), 0);
	assert_int_equal(primary, 0);
	assert_int_equal(replicas, 0);
	assert_int_equal(ROLE("*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n", &primary,
			      &replicas), 0);
	assert_int_equal(primary, 0);
}

static void a_role_of_another_shape_is_refused(void **state)
{
	int primary, replicas;

	(void)state;
	assert_int_equal(ROLE("*3\r\n$6\r\nMASTER\r\n:0\r\n*0\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*2\r\n$6\r\nmaster\r\n:0\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:-1\r\n*0\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:0\r\n:0\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:0\r\n*1\r\n:1\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*3\r\n$6\r\nmaster\r\n:0\r\n*1\r\n*2\r\n:1\r\n:2\r\n", &primary,
			      &replicas), -1);
	assert_int_equal(ROLE("*3\r\n$5\r\nslave\r\n:0\r\n*0\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("*1\r\n$6\r\nmaster\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("$6\r\nmaster\r\n", &primary, &replicas), -1);
	assert_int_equal(ROLE("-ERR unknown command\r\n", &primary, &replicas), -1);
}

/* INFO's text as a bulk string reply, read by redis_sentinel_reply_info_replicas(). */
static int info(const char *text, int *n)
{
	char resp[512];
	redisReply *r;
	const char *why = NULL;
	int len = snprintf(resp, sizeof resp, "$%zu\r\n%s\r\n", strlen(text), text), rc;

	r = read_reply(resp, (size_t)len);
	rc = redis_sentinel_reply_info_replicas(r, n, &why);
	if (rc != 0)
		assert_non_null(why);
	freeReplyObject(r);
	return rc;
}

static void info_replication_counts_every_replica_connected(void **state)
{
	const char *why;
	redisReply *r;
	int n = -1;

	(void)state;
	assert_int_equal(info("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
			      "slave0:ip=127.0.0.1,port=6381,state=wait_bgsave,offset=0,lag=0\r\n", &n),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(info("connected_slaves:0\r\n", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(info("role:master\nconnected_slaves:7", &n), 0);
	assert_int_equal(n, 7);
	/* missing, not a number, out of bounds, not at a line's start */
	assert_int_equal(info("# Replication\r\nrole:master\r\n", &n), -1);
	assert_int_equal(info("connected_slaves:\r\n", &n), -1);
	assert_int_equal(info("connected_slaves:-1\r\n", &n), -1);
	assert_int_equal(info("connected_slaves:1x\r\n", &n), -1);
	assert_int_equal(info("connected_slaves:65536\r\n", &n), -1);
	assert_int_equal(info("xconnected_slaves:1\r\n", &n), -1);
	/* not a string */
	r = read_reply(":1\r\n", 4);
	assert_int_equal(redis_sentinel_reply_info_replicas(r, &n, &why), -1);
	freeReplyObject(r);
}

static void a_change_of_primary_is_counted_once(void **state)
{
	struct redis_sentinel_primary a = { "10.0.0.1", 6379 }, b = { "10.0.0.2", 6379 };

	(void)state;
	assert_int_equal(redis_sentinel_changes_take(), 0);
	redis_sentinel_note_primary("m", &a); /* the first one met is no change */
	redis_sentinel_note_primary("m", &a);
	assert_int_equal(redis_sentinel_changes_take(), 0);
	redis_sentinel_note_primary("m", &b);
	redis_sentinel_note_primary("m", &b);
	assert_int_equal(redis_sentinel_changes_take(), 1);
	assert_int_equal(redis_sentinel_changes_take(), 0);
	b.port = 6380;
	redis_sentinel_note_primary("m", &b);
	redis_sentinel_note_primary("m", &a);
	assert_int_equal(redis_sentinel_changes_take(), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_sentinel_names_a_host_and_a_port_or_nothing),
		cmocka_unit_test(anything_else_a_sentinel_says_is_refused),
		cmocka_unit_test(role_tells_a_primary_and_its_replicas_from_a_replica),
		cmocka_unit_test(a_role_of_another_shape_is_refused),
		cmocka_unit_test(info_replication_counts_every_replica_connected),
		cmocka_unit_test(a_change_of_primary_is_counted_once),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	redisReaderFree(reader);
	return rc;
}
