/* reap.h — otp-deleter's passes: delete every due message, then remove its row, or schedule a
 * retry. Deletions run concurrently (a tg_batch); several due messages of one chat go in one
 * deleteMessages call. A row is removed only after Telegram confirmed (or answered an error no
 * retry can fix), so a crash at any moment leaves work for the next run, never a lost deletion.
 *
 * The caller's loop drives a pass: reap_pass() starts it, reap_step() runs it one step at a
 * time (the caller does its housekeeping between steps) until it returns 0 or -1. Nothing here
 * calls back into the caller. */
#ifndef OTP_REAP_H
#define OTP_REAP_H

#include <signal.h>
#include <stdint.h>

#include "tg.h"

struct policy;
struct store;

struct reap_stats {
	long deleted, failed_permanently, retried;
	long deleted_early; /* of deleted: before their delete_at (a stop that could not wait) */
};

#define REAP_BATCH_MAX 1000
#define REAP_FETCH_EVERY_MS 50   /* while a pass runs, rows falling due are picked up this often */

/* The calls a pass makes: tg_batch's (reap_tg_batch_ops), or a test's fake. */
struct reap_batch_ops {
	/* Queues the deletion of ids[0..n) (n ≤ TG_DELETE_MESSAGES_MAX) in chat_id; tag comes
	 * back through next_done(). Returns 0 or -1. */
	int (*add_delete)(void *batch, const char *chat_id, const long long *ids, int n, void *tag);
	/* As tg_batch_step(): 1 while calls run or wait, 0 once idle. */
	int (*step)(void *batch, int stop, int wait_ms);
	/* As tg_batch_next_done(): 1 and a call that is over in *out, or 0. */
	int (*next_done)(void *batch, struct tg_done *out);
	/* As tg_batch_halt(). */
	void (*halt)(void *batch);
};

extern const struct reap_batch_ops reap_tg_batch_ops;

/* The deleter's state across passes. reap_init() fills it; the caller reads stats and
 * pause_until_ms, and nothing else. */
struct reaper {
	struct store *store;
	const struct policy *policy;         /* Telegram's pauses: their bound, where they live */
	void *batch;
	const struct reap_batch_ops *ops;
	const volatile sig_atomic_t *stop;   /* set by SIGTERM: start no new call */

	int64_t pause_until_ms;              /* Telegram's 429: no call before this */
	struct reap_stats stats;
	int64_t last_retry_ms;               /* the latest next try given to a failed row */
	unsigned int seed;                   /* backoff jitter */

	/* the pass under way */
	int busy;
	int64_t *inflight;                   /* ids of the rows of queued and running calls */
	int ninflight, inflight_cap;
	int64_t last_fetch_ms;               /* clock_mono_ms() */
	int fetched;
	int failed;                          /* a store read or write failed */
	int requeued;                        /* settling queued calls (asked about one by one) */
	/* rows Telegram confirmed whose removal failed: removed again, never asked about again */
	int64_t *confirmed;
	int nconfirmed, confirmed_cap;
};

/* The delay before retry number `attempts` (1, 2, …): 1 s doubling to 60 s, ±20 % jitter. */
int64_t reap_backoff_ms(int attempts, unsigned int *seed);

void reap_init(struct reaper *r, struct store *s, const struct policy *policy, void *batch,
	       const struct reap_batch_ops *ops, const volatile sig_atomic_t *stop, unsigned int seed);
void reap_free(struct reaper *r);

/* Starts a pass over the rows due at now_ms, at most max (≤ REAP_BATCH_MAX) of them, unless
 * Telegram's pause (ours or one another process recorded) is still on. First removes the rows
 * of deletions Telegram confirmed in an earlier pass whose removal failed. Returns the number of
 * rows queued (0: nothing to do, no pass under way; > 0: drive it with reap_step()), or -1 when
 * those removals or the read of the due rows failed (logged): the caller backs off. */
int reap_pass(struct reaper *r, int64_t now_ms, int max);

/* Runs the pass one step: queues rows that fell due meanwhile (every REAP_FETCH_EVERY_MS), then
 * steps the calls (waiting at most wait_ms). Returns 1 while the pass goes on, 0 when it is over,
 * -1 when it is over and a store read or write failed (logged): the caller backs off. */
int reap_step(struct reaper *r, int wait_ms);

/* 1 while a pass is under way. */
int reap_busy(const struct reaper *r);

#endif
