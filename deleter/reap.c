/* reap.c — deleting due messages. See reap.h. */
#include "reap.h"

#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "store.h"

#define BATCH_MAX 256

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

static void log_deleted(const struct pending *p, int64_t now_ms, const struct tg_result *res)
{
	char masked[LOG_MASKED_LEN];

	log_mask_chat_id(p->chat_id, masked);
	log_json(LOG_INFO, res->status == TG_OK ? "message deleted" : "message already gone",
		 json_pack("{s:s, s:I, s:f, s:i}", "chat_id", masked, "message_id",
			   (json_int_t)p->message_id, "lag_seconds",
			   (double)(now_ms - p->delete_at_ms) / 1000.0, "attempts", p->attempts + 1));
}

static void log_failure(const struct pending *p, const struct tg_result *res, int permanent)
{
	char masked[LOG_MASKED_LEN];

	log_mask_chat_id(p->chat_id, masked);
	log_json(permanent ? LOG_ERROR : LOG_WARNING,
		 permanent ? "message cannot be deleted: row removed" : "deletion failed: will retry",
		 json_pack("{s:s, s:I, s:s, s:i, s:s, s:i}", "chat_id", masked, "message_id",
			   (json_int_t)p->message_id, "result", tg_status_name(res->status),
			   "telegram_error_code", res->error_code, "error", res->description,
			   "attempts", p->attempts + 1));
}

/* Applies the outcome of one attempt to its row. */
static int settle(struct store *s, const struct pending *p, const struct tg_result *res,
		  int64_t *pause_until_ms, struct reap_stats *stats, unsigned int *seed)
{
	int64_t now = clock_now_ms(), next;

	switch (reap_classify(res)) {
	case REAP_DONE:
		log_deleted(p, now, res);
		stats->deleted++;
		return store_pending_remove(s, p->id);
	case REAP_PERMANENT:
		log_failure(p, res, 1);
		stats->failed_permanently++;
		return store_pending_remove(s, p->id);
	case REAP_RETRY:
	default:
		log_failure(p, res, 0);
		stats->retried++;
		if (res->status == TG_RETRY_AFTER) {
			next = now + (int64_t)res->retry_after_s * 1000;
			if (next > *pause_until_ms)
				*pause_until_ms = next;
		} else {
			next = now + reap_backoff_ms(p->attempts + 1, seed);
		}
		return store_pending_retry(s, p->id, next);
	}
}

int reap_pass(struct store *s, struct tg *tg, int64_t now_ms, int max, int64_t *pause_until_ms,
	      struct reap_stats *stats, unsigned int *seed)
{
	struct pending rows[BATCH_MAX];
	struct tg_result res;
	int n, i;

	if (max > BATCH_MAX)
		max = BATCH_MAX;
	n = store_pending_due(s, now_ms, rows, max);
	if (n < 0) {
		log_msg(LOG_ERROR, "reading due deletions: %s", store_strerror(s));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (clock_now_ms() < *pause_until_ms)
			break; /* Telegram asked for a pause: the rest waits */
		tg_delete_message(tg, rows[i].chat_id, rows[i].message_id, &res);
		if (settle(s, &rows[i], &res, pause_until_ms, stats, seed) != 0) {
			log_msg(LOG_ERROR, "updating a deletion row: %s", store_strerror(s));
			return -1;
		}
	}
	return i;
}
