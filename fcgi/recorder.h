/* recorder.h — the pending rows of one process's sends, written together (group commit).
 *
 * Every send writes its pending row before it answers 200. Written one by one, each row is a
 * write transaction of its own, and the process's writers queue for SQLite's one write lock,
 * every one paying for its own commit. Here a thread hands its row in and waits: the first to
 * find no batch being written writes its own at once; the rows handed in meanwhile wait, and
 * the next of them to wake writes them all in one store_pending_add_many() (one transaction
 * with SQLite). Nobody waits for a timer: under load the batches grow by themselves, and a lone
 * send writes alone.
 *
 * Each row still learns its own outcome: recorder_add() returns only once its row is committed
 * or known not to be (the caller then withdraws its message). Thread-safe. */
#ifndef OTP_RECORDER_H
#define OTP_RECORDER_H

#include <stddef.h>

#include "store.h"

struct recorder;
struct store_pool;

/* A recorder writing with stores taken from pool (which must outlive it); NULL when out of
 * memory. */
struct recorder *recorder_new(struct store_pool *pool);
/* Frees it; no thread may be in recorder_add(). */
void recorder_free(struct recorder *r);

/* Records row (store_pending_add_many()'s contract for one row), maybe in one transaction with
 * other threads' rows. Returns 0 with row->stored_ms set once the row is committed, or -1
 * (row->failed) with the reason in err (errlen bytes). The calling thread must hold no store
 * of the pool: it may take one to write a batch (store_pool.h). */
int recorder_add(struct recorder *r, struct store_pending_row *row, char *err, size_t errlen);

#endif
