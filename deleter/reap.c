/* reap.c — deleting due messages concurrently. See reap.h. */
#include "reap.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define PROGRAM "otp-deleter"

/* One Bot API call: rows[first .. first+n) share a chat. */
struct group {
	int first, n;
};

struct pass {
	struct reaper *r;
	struct pending *rows;
	int64_t *done_ids;
	int ndone;
	int failed;           /* a store write failed */
};

enum reap_outcome reap_classify(const struct tg_result *res)
{
	switch (res->status) {
	case TG_OK:
	case TG_NOT_FOUND:
		return REAP_DONE;
	case TG_REFUSED:
		if (res->error_code == 401 || res->error_code == 404)
			return REAP_RETRY;
		return REAP_PERMANENT;
	default:
		return REAP_RETRY;
	}
}

int64_t reap_backoff_ms(int attempts, unsigned int *seed)
{
	int64_t base = 1000;
	int i;

	for (i = 1; i < attempts && base < 60000; i++)
		base *= 2;
	if (base > 60000)
		base = 60000;
	/* ±20 % so that rows that failed together do not retry in lockstep */
	return base * 8 / 10 + (int64_t)(rand_r(seed) % (int)(base * 4 / 10 + 1));
}

static void log_row(enum log_level level, const char *message, const struct pending *p,
		    const struct tg_result *res, int64_t now_ms)
{
	char masked[LOG_MASKED_LEN];
	json_t *f;

	log_mask_chat_id(p->chat_id, masked);
	f = json_pack("{s:s, s:I, s:f, s:i}", "chat_id", masked, "message_id",
		      (json_int_t)p->message_id, "lag_seconds",
		      (double)(now_ms - p->delete_at_ms) / 1000.0, "attempts", p->attempts + 1);
	if (res->status != TG_OK) {
		json_object_set_new(f, "result", json_string(tg_status_name(res->status)));
		json_object_set_new(f, "telegram_error_code", json_integer(res->error_code));
		json_object_set_new(f, "error", json_string(res->description));
	}
	log_json(level, message, f);
}

/* Applies one call's result to each row it covered. Rows to remove are collected and removed
 * together after the pass; retries are written at once. */
static int settle(void *ctx, void *tag, const struct tg_result *res)
{
	struct pass *ps = ctx;
	struct reaper *r = ps->r;
	const struct group *g = tag;
	enum reap_outcome outcome = reap_classify(res);
	int64_t now = clock_now_ms(), next;
	int i;

	for (i = g->first; i < g->first + g->n; i++) {
		const struct pending *p = &ps->rows[i];

		switch (outcome) {
		case REAP_DONE:
			log_row(LOG_INFO, res->status == TG_OK ? "message deleted"
							       : "message already gone",
				p, res, now);
			r->stats.deleted++;
			metrics_count("otp_deleted_total", "", 1);
			metrics_observe("otp_delete_lag_seconds", "",
					(double)(now - p->delete_at_ms) / 1000.0);
			ps->done_ids[ps->ndone++] = p->id;
			break;
		case REAP_PERMANENT:
			log_row(LOG_ERROR, "message cannot be deleted: row removed", p, res, now);
			r->stats.failed_permanently++;
			metrics_count("otp_delete_failed_total", "", 1);
			ps->done_ids[ps->ndone++] = p->id;
			break;
		case REAP_RETRY:
			log_row(LOG_WARNING, "deletion failed: will retry", p, res, now);
			r->stats.retried++;
			metrics_count("otp_delete_retried_total", "", 1);
			next = res->status == TG_RETRY_AFTER
				       ? now + (int64_t)res->retry_after_s * 1000
				       : now + reap_backoff_ms(p->attempts + 1, &r->seed);
			if (store_pending_retry(r->store, p->id, next) != 0)
				ps->failed = 1;
			break;
		}
	}
	if (res->status == TG_RETRY_AFTER) {
		next = now + (int64_t)res->retry_after_s * 1000;
		if (next > r->pause_until_ms)
			r->pause_until_ms = next;
		if (store_pause_extend(r->store, next, PROGRAM) != 0)
			ps->failed = 1;
		return 1; /* Telegram asked everyone to wait: start nothing more */
	}
	return 0;
}

static void tick(void *ctx)
{
	struct pass *ps = ctx;

	if (ps->r->tick != NULL)
		ps->r->tick(ps->r->tick_ctx);
}

static int by_chat(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	int c = strcmp(x->chat_id, y->chat_id);

	if (c != 0)
		return c;
	return x->next_try_ms < y->next_try_ms ? -1 : x->next_try_ms > y->next_try_ms;
}

/* Groups rows (sorted by chat) into calls of at most TG_DELETE_MESSAGES_MAX ids per chat. */
static int group_rows(const struct pending *rows, int n, struct group *groups)
{
	int i, ng = 0;

	for (i = 0; i < n; i++) {
		if (ng > 0 && strcmp(rows[groups[ng - 1].first].chat_id, rows[i].chat_id) == 0 &&
		    groups[ng - 1].n < TG_DELETE_MESSAGES_MAX) {
			groups[ng - 1].n++;
			continue;
		}
		groups[ng].first = i;
		groups[ng].n = 1;
		ng++;
	}
	return ng;
}

/* Raises our pause to one another process recorded. */
static void adopt_shared_pause(struct reaper *r)
{
	int64_t until = 0;

	if (store_pause_get(r->store, &until) == 1 && until > r->pause_until_ms)
		r->pause_until_ms = until;
}

int reap_pass(struct reaper *r, int64_t now_ms, int max)
{
	struct pending *rows = NULL;
	struct group *groups = NULL;
	long long ids[TG_DELETE_MESSAGES_MAX];
	struct pass ps;
	int n, ng, g, i, rc = -1;

	adopt_shared_pause(r);
	if (now_ms < r->pause_until_ms)
		return 0;
	if (max > REAP_BATCH_MAX)
		max = REAP_BATCH_MAX;
	rows = malloc((size_t)max * sizeof *rows);
	groups = malloc((size_t)max * sizeof *groups);
	memset(&ps, 0, sizeof ps);
	ps.done_ids = malloc((size_t)max * sizeof *ps.done_ids);
	if (rows == NULL || groups == NULL || ps.done_ids == NULL) {
		log_msg(LOG_ERROR, "reap: out of memory");
		goto out;
	}
	n = store_pending_due(r->store, now_ms, rows, max);
	if (n < 0) {
		log_msg(LOG_ERROR, "reading due deletions: %s", store_strerror(r->store));
		goto out;
	}
	qsort(rows, (size_t)n, sizeof *rows, by_chat);
	ng = group_rows(rows, n, groups);
	for (g = 0; g < ng; g++) {
		for (i = 0; i < groups[g].n; i++)
			ids[i] = rows[groups[g].first + i].message_id;
		if (tg_batch_add_delete(r->batch, rows[groups[g].first].chat_id, ids, groups[g].n,
					&groups[g]) != 0) {
			log_msg(LOG_ERROR, "reap: cannot queue a deletion (out of memory)");
			break;
		}
	}
	ps.r = r;
	ps.rows = rows;
	tg_batch_run(r->batch, settle, tick, &ps, r->stop);
	if (store_pending_remove_many(r->store, ps.done_ids, ps.ndone) != 0 || ps.failed) {
		log_msg(LOG_ERROR, "updating deletion rows: %s", store_strerror(r->store));
		goto out;
	}
	rc = n;
out:
	free(ps.done_ids);
	free(groups);
	free(rows);
	return rc;
}
