/* store.c — the store's seam: opens the backend OTP_STORE names (store_url.h) and hands every
 * call to its method table (store_backend.h). The backends are store_sqlite.c (with
 * store_sqlite_file.c) and store_redis.c; the two calls of store.h that concern the SQLite file
 * before any handle (store_check_db_dir, store_reopens_take) are store_sqlite_file.c's own, and
 * the one about Sentinel's changes of primary (store_primary_changes_take) is store_redis.c's. */
#define _GNU_SOURCE
#include "store.h"

#include <stdio.h>
#include <stdlib.h>

#include "store_backend.h"
#include "store_url.h"

struct store {
	const struct store_ops *ops;
	void *impl; /* the backend's handle */
};

static const struct store_ops *ops_of(const struct store_url *u)
{
	return u->kind == STORE_SQLITE ? &sqlite_store_ops : &redis_store_ops;
}

int store_url_is_shared(const struct store_url *u)
{
	return ops_of(u)->shared_by_hosts;
}

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
	s->ops = ops_of(u);
	if ((s->impl = s->ops->open(u, c, err, errlen)) == NULL)
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
	s->ops->close(s->impl);
	free(s);
}

int store_is_shared(const struct store *s)
{
	return s->ops->shared_by_hosts;
}

int store_check_file(struct store *s)
{
	return s->ops->check_file(s->impl);
}

const char *store_strerror(const struct store *s)
{
	return s->ops->strerror(s->impl);
}

int store_is_on_tmpfs(const struct store *s)
{
	return s->ops->is_on_tmpfs(s->impl);
}

int store_rate_take(struct store *s, const struct store_rate_rule *rules, int nrules,
		    const struct store_slot_request *slot, int64_t now_ms,
		    struct store_rate_verdict *verdict)
{
	return s->ops->rate_take(s->impl, rules, nrules, slot, now_ms, verdict);
}

int store_rate_release(struct store *s, const struct store_rate_verdict *verdict)
{
	return s->ops->rate_release(s->impl, verdict);
}

int store_rate_prune(struct store *s, const char *scope, int64_t expired_ms)
{
	return s->ops->rate_prune(s->impl, scope, expired_ms);
}

long long store_rate_count(struct store *s, const char *scope, const char *subject)
{
	return s->ops->rate_count(s->impl, scope, subject);
}

int store_pending_add(struct store *s, const struct pending_ref *ref, int64_t delete_at_ms,
		      int64_t *stored_ms)
{
	return s->ops->pending_add(s->impl, ref, delete_at_ms, stored_ms);
}

int store_pending_add_many(struct store *s, struct store_pending_row *rows, int n)
{
	return s->ops->pending_add_many(s->impl, rows, n);
}

int store_pending_due(struct store *s, int64_t now_ms, struct pending *out, int max)
{
	return s->ops->pending_due(s->impl, now_ms, out, max);
}

int store_pending_next(struct store *s, int64_t *next_ms)
{
	return s->ops->pending_next(s->impl, next_ms);
}

int store_pending_last(struct store *s, int64_t *last_ms)
{
	return s->ops->pending_last(s->impl, last_ms);
}

long long store_pending_count(struct store *s)
{
	return s->ops->pending_count(s->impl);
}

int store_pending_remove(struct store *s, int64_t id)
{
	return s->ops->pending_remove(s->impl, id);
}

int store_pending_retry(struct store *s, int64_t id, int64_t next_try_ms)
{
	return s->ops->pending_retry(s->impl, id, next_try_ms);
}

int store_pending_remove_many(struct store *s, const int64_t *ids, int n)
{
	return s->ops->pending_remove_many(s->impl, ids, n);
}

int store_pending_claim(struct store *s, const struct pending_ref *ref,
			const struct store_claim_request *req, struct pending *out)
{
	return s->ops->pending_claim(s->impl, ref, req, out);
}

int store_pending_release(struct store *s, int64_t id, int64_t now_ms)
{
	return s->ops->pending_release(s->impl, id, now_ms);
}

int store_pause_extend(struct store *s, const char *kind, int64_t until_ms, const char *program)
{
	return s->ops->pause_extend(s->impl, kind, until_ms, program);
}

int store_pause_get(struct store *s, const char *kind, int64_t *until_ms)
{
	return s->ops->pause_get(s->impl, kind, until_ms);
}

int store_metrics_add(struct store *s, const struct store_metric *deltas, int n, int *added)
{
	*added = 0;
	return s->ops->metrics_add(s->impl, deltas, n, added);
}

int store_metrics_read(struct store *s, void (*fn)(void *ctx, const struct store_metric *m),
		       void *ctx)
{
	return s->ops->metrics_read(s->impl, fn, ctx);
}

int store_heartbeat_set(struct store *s, const char *program, int64_t now_ms)
{
	return s->ops->heartbeat_set(s->impl, program, now_ms);
}

int store_heartbeat_get(struct store *s, const char *program, int64_t *beat_ms)
{
	return s->ops->heartbeat_get(s->impl, program, beat_ms);
}
