/* app.h — what otp-fcgi's handlers share: the settings (read-only once threads run) and each
 * worker thread's own connections. */
#ifndef OTP_APP_H
#define OTP_APP_H

#include <stdatomic.h>

#include "cfg.h"
#include "http.h"
#include "policy.h"

struct store;
struct tg;

struct app {
	const struct cfg *cfg;
	struct policy policy; /* the limits, from cfg */
	atomic_int stopping;  /* set on SIGTERM: requests not yet sent are answered 503 */
};

/* One per thread: nothing in it is shared, so nothing in it is locked. */
struct worker {
	const struct app *app;
	struct store *store; /* opened on first use, reopened after a failure */
	struct tg *tg;
};

/* The worker's store, opening it if need be; NULL (logged) when the database cannot be opened. */
struct store *worker_store(struct worker *w);

/* A handler answers one request by filling resp. */
typedef void (*handler_fn)(struct worker *w, const struct request *req, struct response *resp);

#define SERVICE_NAME "OTP Social Gateway"
#define SERVICE_VERSION "1.0.0"
#define DELETER_PROGRAM "otp-deleter"

#endif
