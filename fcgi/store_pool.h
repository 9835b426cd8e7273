/* store_pool.h — one process's stores, shared by its worker threads. A request needs a store
 * only for the few hundred microseconds of each store call, never while it waits for Telegram
 * (hundreds of milliseconds) or for its turn to send: so a few stores serve hundreds of threads,
 * where one per thread cost a connection, its schema, statements and page cache each.
 *
 * A store taken from the pool is its taker's alone until given back. The pool opens a new one
 * when none is idle, and keeps at most max_idle idle (closing any more given back), so it holds
 * about as many stores as calls run at once. Thread-safe. */
#ifndef OTP_STORE_POOL_H
#define OTP_STORE_POOL_H

#include <stddef.h>

#include "store.h"

struct store_pool;

/* A pool opening stores with c (copied; the strings it points to must outlive the pool).
 * NULL when out of memory. */
struct store_pool *store_pool_new(const struct store_config *c, int max_idle);
/* Closes the idle stores and frees the pool; every taken store must have been given back. */
void store_pool_free(struct store_pool *p);

/* An idle store (the one given back last), or a new one; NULL with a reason in err when the
 * store cannot be opened. */
struct store *store_pool_take(struct store_pool *p, char *err, size_t errlen);

/* Gives s back (NULL: nothing): kept for the next taker, or closed when max_idle are idle. */
void store_pool_give(struct store_pool *p, struct store *s);

/* How many stores the pool has open now, taken and idle (tests, inspection). */
int store_pool_open_count(struct store_pool *p);

#endif
