/* store_pool.h — one process's stores, shared by its worker threads. A request needs a store
 * only for its store calls, never while it waits for Telegram (hundreds of milliseconds) or for
 * its turn to send: so a few stores serve hundreds of threads, where one per thread cost a
 * connection with its schema, statements and page cache each (about 125 KiB with SQLite).
 *
 * A store taken from the pool is its taker's alone until given back. The pool opens stores as
 * takers need them, up to max_open; beyond that a taker waits until one is given back. A few are
 * enough: SQLite's writes queue on one lock whatever the number of connections (a taker waits
 * here instead of holding a connection while it waits for that lock). A thread must give back
 * the store it holds before it takes another. Thread-safe. */
#ifndef OTP_STORE_POOL_H
#define OTP_STORE_POOL_H

#include <stddef.h>

#include "store.h"

struct store_pool;

/* A pool of at most max_open (≥ 1) stores opened with c (copied; the strings it points to must
 * outlive the pool). NULL when out of memory. */
struct store_pool *store_pool_new(const struct store_config *c, int max_open);
/* Closes the stores and frees the pool; every taken store must have been given back. */
void store_pool_free(struct store_pool *p);

/* An idle store (the one given back last), or a new one while fewer than max_open are open, or
 * else the first one given back. NULL with a reason in err when a store cannot be opened. */
struct store *store_pool_take(struct store_pool *p, char *err, size_t errlen);

/* Gives s back for the next taker (NULL: nothing). */
void store_pool_give(struct store_pool *p, struct store *s);

/* How many stores the pool has open now, taken and idle (tests, inspection). */
int store_pool_open_count(struct store_pool *p);

#endif
