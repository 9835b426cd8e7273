/* app.h — what otp-fcgi's handlers share: the settings (read-only once threads run), the
 * process's pool of stores, and each worker thread's own Bot API connection. */
#ifndef OTP_APP_H
#define OTP_APP_H

#include <stdatomic.h>

#include "cfg.h"
#include "http.h"
#include "policy.h"

struct apikeys;
struct recorder;
struct store;
struct store_pool;
struct tg;

struct app {
	const struct cfg *cfg;
	struct policy policy;      /* the limits, from cfg */
	struct store_pool *stores; /* shared by the workers (store_pool.h) */
	struct recorder *recorder; /* writes the sends' pending rows together (recorder.h) */
	struct apikeys *keys;      /* who may call the POST endpoints (apikeys.h) */
	atomic_int stopping;       /* set on SIGTERM: requests not yet sent are answered 503 */
};

/* One per thread: nothing in it is shared, so nothing in it is locked. */
struct worker {
	const struct app *app;
	struct store *store;  /* taken from app->stores, or NULL: see worker_store() */
	char store_err[256];  /* why the last store could not be opened */
	struct tg *tg;        /* its own: keeps its Bot API connection alive between requests */
};

/* A store for the worker's store calls: the one it holds, or one taken from the pool; NULL
 * (logged) when the database cannot be opened. A store is held only while store calls run:
 * a handler gives it back with worker_store_give() before anything that waits (a Bot API call,
 * the turn to send), and takes one again (maybe another) after; pointers to the old one are
 * then no longer its to use. serve() gives back whatever a handler still holds after every
 * request. */
struct store *worker_store(struct worker *w);

/* Gives the worker's store back to the pool (nothing if it holds none). */
void worker_store_give(struct worker *w);

/* The reason for the last store failure: the store's own (store_strerror) while one is held,
 * else why the last one could not be opened. */
const char *worker_store_strerror(const struct worker *w);

/* A handler answers one request by filling resp. */
typedef void (*handler_fn)(struct worker *w, const struct request *req, struct response *resp);

#define SERVICE_NAME "OTP Social Gateway"
#define SERVICE_VERSION "1.0.0"

#endif
