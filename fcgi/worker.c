/* worker.c — a worker thread's store, taken from the process's pool while it needs one. See
 * app.h. */
#include "app.h"
#include "log.h"
#include "store.h"
#include "store_pool.h"

struct store *worker_store(struct worker *w)
{
	if (w->store == NULL) {
		w->store = store_pool_take(w->app->stores, w->store_err, sizeof w->store_err);
		if (w->store == NULL)
			log_msg(LOG_ERROR, "opening the database: %s", w->store_err);
	}
	return w->store;
}

void worker_store_give(struct worker *w)
{
	store_pool_give(w->app->stores, w->store);
	w->store = NULL;
}

const char *worker_store_strerror(const struct worker *w)
{
	return w->store != NULL ? store_strerror(w->store) : w->store_err;
}
