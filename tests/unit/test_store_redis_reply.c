/* test_store_redis_reply.c — the Redis backend's checked replies (store_redis_reply.h): replies
 * are written as a server sends them (RESP) and read by hiredis's reader with our bounds, as
 * store_redis.c reads them; each script's reader takes its own shape and refuses the rest. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "store_redis_reply.h"

static redisReader *reader;

/* The one reply resp holds, or NULL when the reader refuses it. */
static redisReply *read_reply(const char *resp, size_t len)
{
	void *r = NULL;

	redisReaderFree(reader);
	reader = redisReaderCreate();
	assert_non_null(reader);
	assert_int_equal(redis_reply_limit(reader), 0);
	assert_int_equal(redisReaderFeed(reader, resp, len), REDIS_OK);
	if (redisReaderGetReply(reader, &r) != REDIS_OK)
		return NULL;
	return r;
}

#define READ(lit) read_reply(lit, sizeof lit - 1)

static int take(const char *resp, size_t len, int nrules, struct store_rate_verdict *v)
{
	redisReply *r = read_reply(resp, len);
	const char *why = NULL;
	int64_t now;
	int rc;

	assert_non_null(r);
	rc = redis_reply_rate_take(r, nrules, v, &now, &why);
	if (rc != 0)
		assert_non_null(why);
	freeReplyObject(r);
	return rc;
}

#define TAKE(lit, n, v) take(lit, sizeof lit - 1, n, v)

static void the_rate_take_reply_is_read_in_each_of_its_three_shapes(void **state)
{
	struct store_rate_verdict v;

	(void)state;
	assert_int_equal(TAKE("*8\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:1000\r\n:1000\r\n:7\r\n:1\r\n", 1, &v),
			 0);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(v.nslots, 1);
	assert_int_equal(v.slot_ids[0], 7);
	assert_int_equal(TAKE("*6\r\n:2\r\n:900\r\n:0\r\n:0\r\n:0\r\n:1000\r\n", 2, &v), 0);
	assert_int_equal(v.refused_rule, 1);
	assert_int_equal(v.freeing_at_ms, 900);
	assert_int_equal(v.nslots, 0);
	assert_int_equal(TAKE("*6\r\n:-1\r\n:0\r\n:1\r\n:1\r\n:5000\r\n:1000\r\n", 2, &v), 0);
	assert_int_equal(v.slot_refused, 1);
	assert_int_equal(v.nslots, 0);
}

/* The reply (first element 0, more elements than the rules explain) and its kin. */
static void a_rate_take_refused_by_the_heartbeat_says_what_it_found(void **state)
{
	struct store_rate_verdict v;

	(void)state;
	assert_int_equal(TAKE("*6\r\n:0\r\n:1234\r\n:1\r\n:0\r\n:0\r\n:1000\r\n", 2, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.beat_found, 1);
	assert_int_equal(v.beat_ms, 1234);
	assert_int_equal(v.refused_rule, -1);
	assert_int_equal(v.nslots, 0);
	assert_int_equal(TAKE("*6\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1000\r\n", 1, &v), 0);
	assert_int_equal(v.beat_refused, 1);
	assert_int_equal(v.beat_found, 0);
	/* refused, yet with events */
	assert_int_equal(TAKE("*8\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1000\r\n:7\r\n:1\r\n", 1, &v),
			 -1);
}

static void a_rate_take_reply_of_any_other_shape_is_refused(void **state)
{
	struct store_rate_verdict v;

	(void)state;
	assert_int_equal(TAKE("*9\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n", 2, &v),
			 -1);
	assert_int_equal(TAKE("*6\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n", 1, &v), -1);
	assert_int_equal(TAKE("*6\r\n$1\r\nx\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n", 1, &v), -1);
	/* admitted, but fewer events than rules */
	assert_int_equal(TAKE("*6\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n", 1, &v), -1);
	/* a rule beyond the rules */
	assert_int_equal(TAKE("*6\r\n:3\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n", 2, &v), -1);
	/* refused, but with events */
	assert_int_equal(TAKE("*8\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1\r\n:1\r\n", 1, &v), -1);
	/* flags out of range, negative instants, an id of 0 */
	assert_int_equal(TAKE("*6\r\n:-1\r\n:0\r\n:2\r\n:0\r\n:0\r\n:0\r\n", 1, &v), -1);
	assert_int_equal(TAKE("*8\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:-1\r\n:0\r\n:1\r\n:1\r\n", 1, &v), -1);
	assert_int_equal(TAKE("*8\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1\r\n", 1, &v), -1);
	assert_int_equal(TAKE("+OK\r\n", 1, &v), -1);
	assert_int_equal(TAKE(":5\r\n", 1, &v), -1);
	assert_int_equal(TAKE("*0\r\n", 0, &v), -1);
}

static void due_rows_are_read_only_when_every_field_is_in_range(void **state)
{
	struct pending rows[2];
	redisReply *r;
	const char *why;
	int64_t now;
	int n;

	(void)state;
	r = READ("*2\r\n:5000\r\n*6\r\n:1\r\n$3\r\n100\r\n:42\r\n:4000\r\n:4000\r\n:0\r\n");
	assert_int_equal(redis_reply_pending_due(r, 2, rows, &n, &now, &why), 0);
	assert_int_equal(n, 1);
	assert_int_equal(now, 5000);
	assert_string_equal(rows[0].chat_id, "100");
	assert_int_equal(rows[0].message_id, 42);
	freeReplyObject(r);
	/* more rows than asked for */
	r = READ("*3\r\n:5000\r\n*6\r\n:1\r\n$1\r\n1\r\n:1\r\n:1\r\n:1\r\n:0\r\n"
		 "*6\r\n:2\r\n$1\r\n1\r\n:2\r\n:1\r\n:1\r\n:0\r\n");
	assert_int_equal(redis_reply_pending_due(r, 1, rows, &n, &now, &why), -1);
	freeReplyObject(r);
	/* a row cut short (a nil in Lua ends the table), a chat id too long, a NUL inside */
	r = READ("*2\r\n:5000\r\n*5\r\n:1\r\n$1\r\n1\r\n:1\r\n:1\r\n:1\r\n");
	assert_int_equal(redis_reply_pending_due(r, 2, rows, &n, &now, &why), -1);
	freeReplyObject(r);
	r = READ("*2\r\n:5000\r\n*6\r\n:1\r\n$60\r\n"
		 "012345678901234567890123456789012345678901234567890123456789\r\n"
		 ":1\r\n:1\r\n:1\r\n:0\r\n");
	assert_int_equal(redis_reply_pending_due(r, 2, rows, &n, &now, &why), -1);
	freeReplyObject(r);
	r = READ("*2\r\n:5000\r\n*6\r\n:1\r\n$3\r\n1\0001\r\n:1\r\n:1\r\n:1\r\n:0\r\n");
	assert_int_equal(redis_reply_pending_due(r, 2, rows, &n, &now, &why), -1);
	freeReplyObject(r);
}

static void claims_and_instants_are_read_in_their_shapes_only(void **state)
{
	struct pending p;
	redisReply *r;
	const char *why;
	int64_t now, value;
	int claim, found;

	(void)state;
	r = READ("*2\r\n:0\r\n:5000\r\n");
	assert_int_equal(redis_reply_claim(r, &claim, &p, &now, &why), 0);
	assert_int_equal(claim, STORE_CLAIM_NONE);
	freeReplyObject(r);
	r = READ("*2\r\n:2\r\n:5000\r\n");
	assert_int_equal(redis_reply_claim(r, &claim, &p, &now, &why), -1);
	freeReplyObject(r);
	r = READ("*3\r\n:1\r\n:4000\r\n:5000\r\n");
	assert_int_equal(redis_reply_instant(r, &found, &value, &now, &why), 0);
	assert_int_equal(found, 1);
	assert_int_equal(value, 4000);
	freeReplyObject(r);
	r = READ("*3\r\n:1\r\n$4\r\n4e03\r\n:5000\r\n");
	assert_int_equal(redis_reply_instant(r, &found, &value, &now, &why), -1);
	freeReplyObject(r);
	r = READ("$-1\r\n");
	assert_int_equal(redis_reply_instant(r, &found, &value, &now, &why), -1);
	freeReplyObject(r);
}

/* hiredis allocates an array's element pointers when it reads the header: a server's
 * "*2000000000" is refused there, as is a string beyond the bound. */
static void huge_arrays_and_strings_are_refused_while_reading(void **state)
{
	char *big;
	size_t n = REDIS_REPLY_STRING_MAX + 1;
	int len;

	(void)state;
	assert_null(READ("*2000000000\r\n:1\r\n"));
	assert_null(READ("*4097\r\n"));
	assert_null(READ("*-5\r\n"));
	big = malloc(n + 32);
	assert_non_null(big);
	len = snprintf(big, 32, "$%zu\r\n", n);
	memset(big + len, 'x', n);
	memcpy(big + len + n, "\r\n", 2);
	assert_null(read_reply(big, (size_t)len + n + 2));
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_rate_take_reply_is_read_in_each_of_its_three_shapes),
		cmocka_unit_test(a_rate_take_refused_by_the_heartbeat_says_what_it_found),
		cmocka_unit_test(a_rate_take_reply_of_any_other_shape_is_refused),
		cmocka_unit_test(due_rows_are_read_only_when_every_field_is_in_range),
		cmocka_unit_test(claims_and_instants_are_read_in_their_shapes_only),
		cmocka_unit_test(huge_arrays_and_strings_are_refused_while_reading),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	redisReaderFree(reader);
	return rc;
}
