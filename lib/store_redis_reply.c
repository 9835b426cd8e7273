/* store_redis_reply.c — checked reading of the Redis backend's replies. See store_redis_reply.h. */
#define _GNU_SOURCE
#include "store_redis_reply.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounds while reading ------------------------------------------------------------------ */

/* hiredis's own functions (static in hiredis: copied from a fresh reader, once per process) and
 * ours, which check the bounds and hand over to them. */
static redisReplyObjectFunctions default_fn;
static redisReplyObjectFunctions limited_fn;
static pthread_once_t fn_once = PTHREAD_ONCE_INIT;

static void *create_array(const redisReadTask *task, int elements)
{
	if (elements < 0 || elements > REDIS_REPLY_ELEMENTS_MAX)
		return NULL; /* the reader stops with "Out of memory" */
	return default_fn.createArray(task, elements);
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
	if (len > REDIS_REPLY_STRING_MAX)
		return NULL;
	return default_fn.createString(task, str, len);
}

static int fn_ready;

static void init_fn(void)
{
	redisReader *r = redisReaderCreate();

	if (r == NULL || r->fn == NULL)
		goto out;
	default_fn = *r->fn;
	limited_fn = default_fn;
	limited_fn.createArray = create_array;
	limited_fn.createString = create_string;
	fn_ready = 1;
out:
	redisReaderFree(r);
}

int redis_reply_limit(redisReader *reader)
{
	pthread_once(&fn_once, init_fn);
	if (!fn_ready || reader->fn == NULL)
		return -1;
	/* every reader starts with hiredis's defaults (replies as redisReply trees) */
	if (reader->fn->createArray == default_fn.createArray)
		reader->fn = &limited_fn;
	return 0;
}

/* ---- typed accessors ------------------------------------------------------------------------ */

static int fail(const char **why, const char *what)
{
	*why = what;
	return -1;
}

int redis_reply_int(const redisReply *r, long long lo, long long hi, long long *out,
		    const char **why)
{
	long long v;
	char *end;

	if (r == NULL)
		return fail(why, "missing element");
	if (r->type == REDIS_REPLY_INTEGER) {
		v = r->integer;
	} else if (r->type == REDIS_REPLY_STRING) {
		if (r->len == 0 || r->len > 20 || strlen(r->str) != r->len)
			return fail(why, "not a number");
		errno = 0;
		v = strtoll(r->str, &end, 10);
		if (errno != 0 || *end != '\0' || (r->str[0] != '-' && (r->str[0] < '0' || r->str[0] > '9')))
			return fail(why, "not an integer");
	} else {
		return fail(why, "not an integer");
	}
	if (v < lo || v > hi)
		return fail(why, "number out of range");
	*out = v;
	return 0;
}

int redis_reply_str(const redisReply *r, size_t maxlen, const char **out, const char **why)
{
	if (r == NULL || r->type != REDIS_REPLY_STRING)
		return fail(why, "not a string");
	if (r->len == 0 || r->len > maxlen || strlen(r->str) != r->len)
		return fail(why, "string of the wrong length");
	*out = r->str;
	return 0;
}

int redis_reply_array(const redisReply *r, size_t min, size_t max, const char **why)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return fail(why, "not an array");
	if (r->elements < min || r->elements > max)
		return fail(why, "array of the wrong length");
	return 0;
}

int redis_reply_ok(const redisReply *r, const char **why)
{
	if (r == NULL || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
		return fail(why, "not OK");
	return 0;
}

int redis_reply_int_or_nil(const redisReply *r, long long lo, long long hi, long long *out,
			   int *found, const char **why)
{
	if (r != NULL && r->type == REDIS_REPLY_NIL) {
		*found = 0;
		return 0;
	}
	if (redis_reply_int(r, lo, hi, out, why) != 0)
		return -1;
	*found = 1;
	return 0;
}

/* ---- the replies of our scripts and commands ------------------------------------------------- */

#define N_MAX REDIS_REPLY_NUMBER_MAX

int redis_reply_sha(const redisReply *r, char sha[41], const char **why)
{
	const char *s;
	size_t i;

	if (redis_reply_str(r, 40, &s, why) != 0)
		return -1;
	if (r->len != 40)
		return fail(why, "not a SHA1");
	for (i = 0; i < 40; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return fail(why, "not a SHA1");
	memcpy(sha, s, 41);
	return 0;
}

int redis_reply_rate_take(const redisReply *r, int nrules, struct store_rate_verdict *v,
			  int64_t *now_ms, const char **why)
{
	long long refused, freeing, slot_refused, paused, slot, now, id, at;
	int i;

	if (redis_reply_array(r, 6, 6 + 2 * (size_t)nrules, why) != 0 ||
	    redis_reply_int(r->element[0], -1, nrules, &refused, why) != 0 ||
	    redis_reply_int(r->element[1], 0, N_MAX, &freeing, why) != 0 ||
	    redis_reply_int(r->element[2], 0, 1, &slot_refused, why) != 0 ||
	    redis_reply_int(r->element[3], 0, 1, &paused, why) != 0 ||
	    redis_reply_int(r->element[4], 0, N_MAX, &slot, why) != 0 ||
	    redis_reply_int(r->element[5], 0, N_MAX, &now, why) != 0)
		return -1;
	/* refused by the heartbeat (rule 0), a rule or the queue: nothing taken; else one event
	 * per rule */
	if (r->elements != (refused >= 0 || slot_refused ? 6 : 6 + 2 * (size_t)nrules))
		return fail(why, "array of the wrong length");
	memset(v, 0, sizeof *v);
	*now_ms = now;
	if (refused == 0) {
		v->refused_rule = -1;
		v->beat_refused = 1;
		v->beat_found = (int)slot_refused;
		v->beat_ms = freeing;
		return 0;
	}
	v->refused_rule = refused > 0 ? (int)refused - 1 : -1;
	v->freeing_at_ms = refused > 0 ? freeing : 0;
	v->slot_refused = refused > 0 ? 0 : (int)slot_refused;
	v->slot_paused = refused > 0 ? 0 : (int)paused;
	v->slot_us = refused > 0 ? 0 : slot;
	for (i = 0; 6 + 2 * (size_t)i < r->elements; i++) {
		if (redis_reply_int(r->element[6 + 2 * i], 1, N_MAX, &id, why) != 0 ||
		    redis_reply_int(r->element[7 + 2 * i], 0, N_MAX, &at, why) != 0)
			return -1;
		v->slot_ids[i] = id;
		v->slot_events[i].at_ms = at;
	}
	v->nslots = i;
	return 0;
}

int redis_reply_pending(const redisReply *r, size_t first, struct pending *p, const char **why)
{
	long long id, message_id, delete_at, next_try, attempts;
	const char *chat;

	if (redis_reply_int(r->element[first], 1, N_MAX, &id, why) != 0 ||
	    redis_reply_str(r->element[first + 1], STORE_CHAT_ID_MAX - 1, &chat, why) != 0 ||
	    redis_reply_int(r->element[first + 2], 1, N_MAX, &message_id, why) != 0 ||
	    redis_reply_int(r->element[first + 3], 0, N_MAX, &delete_at, why) != 0 ||
	    redis_reply_int(r->element[first + 4], 0, N_MAX, &next_try, why) != 0 ||
	    redis_reply_int(r->element[first + 5], 0, 1000000, &attempts, why) != 0)
		return -1;
	memset(p, 0, sizeof *p);
	p->id = id;
	memcpy(p->chat_id, chat, r->element[first + 1]->len + 1);
	p->message_id = message_id;
	p->delete_at_ms = delete_at;
	p->next_try_ms = next_try;
	p->attempts = (int)attempts;
	return 0;
}

int redis_reply_pending_due(const redisReply *r, int max, struct pending *out, int *n,
			    int64_t *now_ms, const char **why)
{
	long long now;
	size_t i;

	if (redis_reply_array(r, 1, 1 + (size_t)(max > 0 ? max : 0), why) != 0 ||
	    redis_reply_int(r->element[0], 0, N_MAX, &now, why) != 0)
		return -1;
	for (i = 1; i < r->elements; i++)
		if (redis_reply_array(r->element[i], 6, 6, why) != 0 ||
		    redis_reply_pending(r->element[i], 0, &out[i - 1], why) != 0)
			return -1;
	*n = (int)(r->elements - 1);
	*now_ms = now;
	return 0;
}

int redis_reply_claim(const redisReply *r, int *claim, struct pending *p, int64_t *now_ms,
		      const char **why)
{
	long long c, now;

	if (redis_reply_array(r, 2, 8, why) != 0 ||
	    redis_reply_int(r->element[0], 0, 2, &c, why) != 0 ||
	    redis_reply_int(r->element[1], 0, N_MAX, &now, why) != 0)
		return -1;
	if (r->elements != (c == 0 ? 2 : 8))
		return fail(why, "array of the wrong length");
	if (c != 0 && redis_reply_pending(r, 2, p, why) != 0)
		return -1;
	*claim = c == 0 ? STORE_CLAIM_NONE : c == 1 ? STORE_CLAIM_DUE : STORE_CLAIM_TAKEN;
	*now_ms = now;
	return 0;
}

int redis_reply_instant(const redisReply *r, int *found, int64_t *value, int64_t *now_ms,
			const char **why)
{
	long long f, v, now;

	if (redis_reply_array(r, 3, 3, why) != 0 ||
	    redis_reply_int(r->element[0], 0, 1, &f, why) != 0 ||
	    redis_reply_int(r->element[1], 0, N_MAX, &v, why) != 0 ||
	    redis_reply_int(r->element[2], 0, N_MAX, &now, why) != 0)
		return -1;
	*found = (int)f;
	*value = f ? v : 0;
	*now_ms = now;
	return 0;
}

int redis_reply_metric(const redisReply *r, size_t i, const char **field, double *value,
		       const char **why)
{
	const char *v;
	char *end;

	if (i + 1 >= r->elements || redis_reply_str(r->element[i], 255, field, why) != 0 ||
	    redis_reply_str(r->element[i + 1], 64, &v, why) != 0)
		return fail(why, "metric field or value");
	*value = strtod(v, &end);
	if (*end != '\0')
		return fail(why, "metric value not a number");
	return 0;
}
