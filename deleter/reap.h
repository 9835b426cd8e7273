/* reap.h — one pass of otp-deleter: delete every due message, then remove its row, or schedule a
 * retry. A row is removed only after Telegram confirmed (or answered an error no retry can fix),
 * so a crash at any moment leaves work for the next run, never a lost deletion. */
#ifndef OTP_REAP_H
#define OTP_REAP_H

#include <stdint.h>

#include "tg.h"

struct store;
struct tg;

/* What a deletion attempt means for its row. */
enum reap_outcome {
	REAP_DONE,      /* deleted, or already gone: remove the row */
	REAP_PERMANENT, /* can never succeed (too old, chat gone, bot blocked): log, remove */
	REAP_RETRY,     /* try again later */
};

struct reap_stats {
	long deleted, failed_permanently, retried;
};

/* What Telegram's answer to a deletion means. 401/404 (a wrong token or API base) are retried:
 * they are the operator's to fix, and the rows must survive until then. */
enum reap_outcome reap_classify(const struct tg_result *res);

/* The delay before retry number `attempts` (1, 2, …): 1 s doubling to 60 s, ±20 % jitter. */
int64_t reap_backoff_ms(int attempts, unsigned int *seed);

/* Deletes the rows due at now, at most max of them. Returns the number handled, or -1 on a store
 * error (logged). *pause_until_ms is raised when Telegram asks everyone to wait (429). */
int reap_pass(struct store *s, struct tg *tg, int64_t now_ms, int max,
	      int64_t *pause_until_ms, struct reap_stats *stats, unsigned int *seed);

#endif
