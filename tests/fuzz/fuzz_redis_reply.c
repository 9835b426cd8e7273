/* fuzz_redis_reply.c — libFuzzer: any bytes a Redis server could send, read as RESP by hiredis's
 * own reader (with the bounds store_redis.c puts on it), each reply then handed to the checked
 * reader of every script's and command's reply (store_redis_reply.h, and the sentinel's and
 * ROLE's in redis_sentinel.h). The first byte picks the
 * number of rate rules and the most rows a due-rows call takes. A reply either fails the check
 * or yields values in their ranges; nothing is read out of bounds (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_sentinel.h"
#include "store_redis_reply.h"

static void check_row(const struct pending *p)
{
	if (p->id < 1 || p->message_id < 1 || p->delete_at_ms < 0 || p->next_try_ms < 0 ||
	    p->attempts < 0 || memchr(p->chat_id, '\0', sizeof p->chat_id) == NULL ||
	    p->chat_id[0] == '\0')
		abort();
}

static void every_parser(const redisReply *r, int nrules, int max)
{
	struct store_rate_verdict v;
	struct pending rows[16], p;
	const char *why, *field, *str;
	int64_t now, value;
	long long x;
	double d;
	char sha[41];
	struct redis_sentinel_primary addr;
	int n, found, claim, i, primary, replicas;

	if (redis_reply_sha(r, sha, &why) == 0 && strlen(sha) != 40)
		abort();
	if (redis_reply_rate_take(r, nrules, &v, &now, &why) == 0) {
		if (v.refused_rule < -1 || v.refused_rule >= nrules || v.nslots < 0 ||
		    v.nslots > nrules || (v.nslots != 0 && v.nslots != nrules) || now < 0 ||
		    (v.refused_rule >= 0 && v.nslots != 0) || (v.slot_refused && v.nslots != 0))
			abort();
		for (i = 0; i < v.nslots; i++)
			if (v.slot_ids[i] < 1 || v.slot_events[i].at_ms < 0)
				abort();
	}
	if (redis_reply_pending_due(r, max, rows, &n, &now, &why) == 0) {
		if (n < 0 || n > max)
			abort();
		for (i = 0; i < n; i++)
			check_row(&rows[i]);
	}
	if (redis_reply_claim(r, &claim, &p, &now, &why) == 0) {
		if (claim != STORE_CLAIM_NONE && claim != STORE_CLAIM_DUE && claim != STORE_CLAIM_TAKEN)
			abort();
		if (claim != STORE_CLAIM_NONE)
			check_row(&p);
	}
	if (redis_reply_instant(r, &found, &value, &now, &why) == 0 &&
	    (found < 0 || found > 1 || value < 0 || now < 0))
		abort();
	if (redis_reply_int(r, 0, 0, &x, &why) == 0 && x != 0)
		abort();
	if (redis_reply_int(r, 1, REDIS_REPLY_NUMBER_MAX, &x, &why) == 0 && x < 1)
		abort();
	if (redis_reply_int_or_nil(r, 0, REDIS_REPLY_NUMBER_MAX, &x, &found, &why) == 0 &&
	    found && x < 0)
		abort();
	if (redis_reply_str(r, 64, &str, &why) == 0 && strlen(str) > 64)
		abort();
	(void)redis_reply_ok(r, &why);
	if (redis_sentinel_reply_addr(r, &addr, &found, &why) == 0 && found &&
	    (addr.port < 1 || addr.port > 65535 || addr.host[0] == '\0' ||
	     memchr(addr.host, '\0', sizeof addr.host) == NULL))
		abort();
	if (redis_sentinel_reply_info_replicas(r, &replicas, &why) == 0 &&
	    (replicas < 0 || replicas > 65535))
		abort();
	if (redis_sentinel_reply_role(r, &primary, &replicas, &why) == 0 &&
	    (primary < 0 || primary > 1 || replicas < 0 || replicas > REDIS_REPLY_ELEMENTS_MAX ||
	     (!primary && replicas != 0)))
		abort();
	if (redis_reply_array(r, 0, REDIS_REPLY_ELEMENTS_MAX, &why) == 0)
		for (i = 0; (size_t)i + 1 < r->elements; i += 2)
			if (redis_reply_metric(r, (size_t)i, &field, &d, &why) == 0 &&
			    strlen(field) > 255)
				abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *reader;
	void *reply;
	int nrules, max, k;

	if (size < 1)
		return 0;
	nrules = data[0] % (STORE_RATE_RULES_MAX + 1);
	max = 1 + (data[0] >> 4) % 16;
	if ((reader = redisReaderCreate()) == NULL || redis_reply_limit(reader) != 0)
		abort();
	if (redisReaderFeed(reader, (const char *)data + 1, size - 1) != REDIS_OK)
		goto out;
	for (k = 0; k < 8; k++) {
		reply = NULL;
		if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == NULL)
			break;
		every_parser(reply, nrules, max);
		freeReplyObject(reply);
	}
out:
	redisReaderFree(reader);
	return 0;
}
