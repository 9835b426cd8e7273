/* reap.h — one pass of otp-deleter: delete every due message, then remove its row, or schedule a
 * retry. Deletions run concurrently (a tg_batch); several due messages of one chat go in one
 * deleteMessages call. A row is removed only after Telegram confirmed (or answered an error no
 * retry can fix), so a crash at any moment leaves work for the next run, never a lost deletion. */
#ifndef OTP_REAP_H
#define OTP_REAP_H

#include <signal.h>
#include <stdint.h>

#include "tg.h"

struct policy;
struct store;

/* What a deletion attempt means for its rows. */
enum reap_outcome {
	REAP_DONE,      /* deleted, or already gone: remove the row */
	REAP_PERMANENT, /* can never succeed (too old, chat gone, bot blocked): log, remove */
	REAP_RETRY,     /* try again later */
};

struct reap_stats {
	long deleted, failed_permanently, retried;
};

#define REAP_BATCH_MAX 1000

/* The deleter's state across passes. The caller fills the first block; the rest is reap's. */
struct reaper {
	struct store *store;
	const struct policy *policy;         /* Telegram's pauses: their bound, where they live */
	struct tg_batch *batch;
	const volatile sig_atomic_t *stop;   /* set by SIGTERM: start no new call */
	void (*tick)(void *ctx);             /* called often while calls run (heartbeat) */
	void *tick_ctx;

	int64_t pause_until_ms;              /* Telegram's 429 on deletions: no call before this;
					      * read from the store before each pass */
	struct reap_stats stats;
	unsigned int seed;                   /* backoff jitter */
};

/* What Telegram's answer to a deletion means. 401/404 (a wrong token or API base) are retried:
 * they are the operator's to fix, and the rows must survive until then. */
enum reap_outcome reap_classify(const struct tg_result *res);

/* The delay before retry number `attempts` (1, 2, …): 1 s doubling to 60 s, ±20 % jitter. */
int64_t reap_backoff_ms(int attempts, unsigned int *seed);

/* Deletes the rows due at now_ms, at most max (≤ REAP_BATCH_MAX) of them, unless Telegram's
 * pause on deletions (ours or one another process recorded) is still on; a pause on sends
 * never holds deletions. Returns the number of rows fetched,
 * or -1 on a store error (logged). */
int reap_pass(struct reaper *r, int64_t now_ms, int max);

#endif
