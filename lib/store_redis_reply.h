/* store_redis_reply.h — the Redis backend's replies, checked before any use. redis:// is plain
 * TCP and a server can be anything: every reply of every script and command is read by one
 * function here that accepts exactly the shape it expects (type, element count, each number's
 * range, each string's length) and fails otherwise, so that a wrong reply is a store error and
 * never a read out of bounds. The checks read hiredis's reply tree only; they never call the
 * server. Used by store_redis.c and by the fuzzer (tests/fuzz/fuzz_redis_reply.c).
 *
 * Every function returns 0, or -1 with *why set to a constant string naming what was wrong. */
#ifndef OTP_STORE_REDIS_REPLY_H
#define OTP_STORE_REDIS_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "store.h"

/* Bounds hiredis applies while it reads (redis_reply_limit()): no reply of ours comes near. */
#define REDIS_REPLY_ELEMENTS_MAX 4096
#define REDIS_REPLY_STRING_MAX 65536

/* Instants (ms or µs since the epoch), ids and counts: what a Lua number holds exactly. */
#define REDIS_REPLY_NUMBER_MAX ((1LL << 53) - 1)

/* Makes reader refuse, while reading and before hiredis allocates for them, an array of more than
 * REDIS_REPLY_ELEMENTS_MAX elements (or a negative count other than nil's -1) and a string
 * longer than REDIS_REPLY_STRING_MAX: the read fails as out of memory. Returns 0, or -1 when
 * the process could not make its first reader (out of memory). */
int redis_reply_limit(redisReader *reader);

/* ---- typed accessors: one line per expected shape ----------------------------------------- */

/* An integer reply, or a bulk string holding only a decimal integer, in [lo, hi]. */
int redis_reply_int(const redisReply *r, long long lo, long long hi, long long *out,
		    const char **why);
/* A bulk string of 1 to maxlen bytes with no NUL inside; *out points into r. */
int redis_reply_str(const redisReply *r, size_t maxlen, const char **out, const char **why);
/* An array of min to max elements. */
int redis_reply_array(const redisReply *r, size_t min, size_t max, const char **why);
/* A status reply "OK". */
int redis_reply_ok(const redisReply *r, const char **why);
/* nil: *found 0; else as redis_reply_int() with *found 1. */
int redis_reply_int_or_nil(const redisReply *r, long long lo, long long hi, long long *out,
			   int *found, const char **why);

/* ---- each script's and command's reply ------------------------------------------------------ */

/* SCRIPT LOAD: the script's SHA1, 40 hex digits, into sha (41 bytes). */
int redis_reply_sha(const redisReply *r, char sha[41], const char **why);

/* The rate-take script for nrules rules: {refused rule (1..nrules) or -1, freeing_at_ms,
 * slot_refused, slot_paused, slot_us, now_ms, then (id, at_ms) per rule when everything was
 * taken}, or {0, beat_ms, beat found, 0, 0, now_ms} when the heartbeat refused. Fills v's numbers (instants as the store wrote them), not its scopes and subjects;
 * *now_ms gets the store's clock the script used. */
int redis_reply_rate_take(const redisReply *r, int nrules, struct store_rate_verdict *v,
			  int64_t *now_ms, const char **why);

/* One pending row {id, chat_id, message_id, delete_at_ms, next_try_ms, attempts} at element
 * first of r (r is known to be an array with at least first + 6 elements). */
int redis_reply_pending(const redisReply *r, size_t first, struct pending *p, const char **why);

/* The due-rows script: {now_ms, {row}, {row}, ...} with at most max rows; returns the rows in out,
 * their number in *n, the store's clock in *now_ms. */
int redis_reply_pending_due(const redisReply *r, int max, struct pending *out, int *n,
			    int64_t *now_ms, const char **why);

/* The claim script: {0, now_ms} (none), or {1 or 2, now_ms, row...} (due, taken); *claim gets
 * the store_claim. */
int redis_reply_claim(const redisReply *r, int *claim, struct pending *p, int64_t *now_ms,
		      const char **why);

/* A script that reads one instant and the store's clock: {found (0/1), value, now_ms}. */
int redis_reply_instant(const redisReply *r, int *found, int64_t *value, int64_t *now_ms,
			const char **why);

/* One HGETALL field and value of the metrics hash (strings), at elements i and i + 1. */
int redis_reply_metric(const redisReply *r, size_t i, const char **field, double *value,
		       const char **why);

#endif
