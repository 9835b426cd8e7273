/* store.c — the store's seam: opens the backend OTP_STORE names (store_url.h) and hands every
 * call to it. The backends live in store_sqlite.c and store_redis.c (store_backend.h). */
#define _GNU_SOURCE
#include "store.h"

#include <stdio.h>
#include <stdlib.h>

#include "store_backend.h"
#include "store_url.h"

/* Exactly one of the two is set. */
struct store {
	struct sqlite_store *sq;
	struct redis_store *rd;
};

struct store *store_open_config(const struct store_config *c, char *err, size_t errlen)
{
	struct store *s = NULL;
	struct store_url *u = malloc(sizeof *u); /* PATH_MAX-sized: not on a worker's stack */

	if (u == NULL || (s = calloc(1, sizeof *s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (store_url_parse(c->url, u, err, errlen) != 0)
		goto fail;
	if (u->kind == STORE_SQLITE)
		s->sq = sqlite_store_open(u->path, err, errlen);
	else
		s->rd = redis_store_open(u, c, err, errlen);
	if (s->sq == NULL && s->rd == NULL)
		goto fail;
	free(u);
	return s;
fail:
	free(u);
	free(s);
	return NULL;
}

struct store *store_open(const char *url, char *err, size_t errlen)
{
	const struct store_config c = { .url = url };

	return store_open_config(&c, err, errlen);
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->sq != NULL)
		sqlite_store_close(s->sq);
	else
		redis_store_close(s->rd);
	free(s);
}

int store_is_shared(const struct store *s)
{
	return s->rd != NULL;
}

int store_check_file(struct store *s)
{
	return s->sq != NULL ? sqlite_store_check_file(s->sq) : 0;
}

long store_reopens_take(void)
{
	return sqlite_store_reopens_take();
}

const char *store_strerror(const struct store *s)
{
	return s->sq != NULL ? sqlite_store_strerror(s->sq) : redis_store_strerror(s->rd);
}

int store_is_on_tmpfs(const struct store *s)
{
	return s->sq != NULL ? sqlite_store_is_on_tmpfs(s->sq) : -1;
}

int store_check_db_dir(const char *db_path, char *err, size_t errlen)
{
	return sqlite_store_check_dir(db_path, err, errlen);
}

int store_rate_take(struct store *s, const struct store_rate_rule *rules, int nrules,
		    const struct store_slot_request *slot, int64_t now_ms,
		    struct store_rate_verdict *verdict)
{
	return s->sq != NULL ? sqlite_store_rate_take(s->sq, rules, nrules, slot, now_ms, verdict)
			   : redis_store_rate_take(s->rd, rules, nrules, slot, now_ms, verdict);
}

int store_rate_release(struct store *s, const struct store_rate_verdict *verdict)
{
	return s->sq != NULL ? sqlite_store_rate_release(s->sq, verdict)
			   : redis_store_rate_release(s->rd, verdict);
}

int store_rate_prune(struct store *s, const char *scope, int64_t expired_ms)
{
	return s->sq != NULL ? sqlite_store_rate_prune(s->sq, scope, expired_ms)
			   : redis_store_rate_prune(s->rd, scope, expired_ms);
}

long long store_rate_count(struct store *s, const char *scope, const char *subject)
{
	return s->sq != NULL ? sqlite_store_rate_count(s->sq, scope, subject)
			   : redis_store_rate_count(s->rd, scope, subject);
}

int store_pending_add(struct store *s, const struct pending_ref *ref, int64_t delete_at_ms,
		      int64_t *stored_ms)
{
	return s->sq != NULL ? sqlite_store_pending_add(s->sq, ref, delete_at_ms, stored_ms)
			     : redis_store_pending_add(s->rd, ref, delete_at_ms, stored_ms);
}

int store_pending_add_many(struct store *s, struct store_pending_row *rows, int n)
{
	return s->sq != NULL ? sqlite_store_pending_add_many(s->sq, rows, n)
			     : redis_store_pending_add_many(s->rd, rows, n);
}

int store_pending_due(struct store *s, int64_t now_ms, struct pending *out, int max)
{
	return s->sq != NULL ? sqlite_store_pending_due(s->sq, now_ms, out, max)
			   : redis_store_pending_due(s->rd, now_ms, out, max);
}

int store_pending_next(struct store *s, int64_t *next_ms)
{
	return s->sq != NULL ? sqlite_store_pending_next(s->sq, next_ms)
			   : redis_store_pending_next(s->rd, next_ms);
}

int store_pending_last(struct store *s, int64_t *last_ms)
{
	return s->sq != NULL ? sqlite_store_pending_last(s->sq, last_ms)
			   : redis_store_pending_last(s->rd, last_ms);
}

long long store_pending_count(struct store *s)
{
	return s->sq != NULL ? sqlite_store_pending_count(s->sq) : redis_store_pending_count(s->rd);
}

int store_pending_remove(struct store *s, int64_t id)
{
	return s->sq != NULL ? sqlite_store_pending_remove(s->sq, id)
			   : redis_store_pending_remove(s->rd, id);
}

int store_pending_retry(struct store *s, int64_t id, int64_t next_try_ms)
{
	return s->sq != NULL ? sqlite_store_pending_retry(s->sq, id, next_try_ms)
			   : redis_store_pending_retry(s->rd, id, next_try_ms);
}

int store_pending_remove_many(struct store *s, const int64_t *ids, int n)
{
	return s->sq != NULL ? sqlite_store_pending_remove_many(s->sq, ids, n)
			   : redis_store_pending_remove_many(s->rd, ids, n);
}

int store_pause_extend(struct store *s, const char *kind, int64_t until_ms, const char *program)
{
	return s->sq != NULL ? sqlite_store_pause_extend(s->sq, kind, until_ms, program)
			   : redis_store_pause_extend(s->rd, kind, until_ms, program);
}

int store_pause_get(struct store *s, const char *kind, int64_t *until_ms)
{
	return s->sq != NULL ? sqlite_store_pause_get(s->sq, kind, until_ms)
			   : redis_store_pause_get(s->rd, kind, until_ms);
}

int store_metrics_add(struct store *s, const struct store_metric *deltas, int n, int *added)
{
	*added = 0;
	return s->sq != NULL ? sqlite_store_metrics_add(s->sq, deltas, n)
			   : redis_store_metrics_add(s->rd, deltas, n, added);
}

int store_metrics_read(struct store *s, void (*fn)(void *ctx, const struct store_metric *m),
		       void *ctx)
{
	return s->sq != NULL ? sqlite_store_metrics_read(s->sq, fn, ctx)
			   : redis_store_metrics_read(s->rd, fn, ctx);
}

int store_heartbeat_set(struct store *s, const char *program, int64_t now_ms)
{
	return s->sq != NULL ? sqlite_store_heartbeat_set(s->sq, program, now_ms)
			   : redis_store_heartbeat_set(s->rd, program, now_ms);
}

int store_heartbeat_get(struct store *s, const char *program, int64_t *beat_ms)
{
	return s->sq != NULL ? sqlite_store_heartbeat_get(s->sq, program, beat_ms)
			   : redis_store_heartbeat_get(s->rd, program, beat_ms);
}

int store_pending_claim(struct store *s, const struct pending_ref *ref, int64_t lease_ms,
			struct pending *out)
{
	return s->sq != NULL ? sqlite_store_pending_claim(s->sq, ref, lease_ms, out)
			     : redis_store_pending_claim(s->rd, ref, lease_ms, out);
}

int store_pending_release(struct store *s, int64_t id, int64_t now_ms)
{
	return s->sq != NULL ? sqlite_store_pending_release(s->sq, id, now_ms)
			   : redis_store_pending_release(s->rd, id, now_ms);
}
