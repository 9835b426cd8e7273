/* worker.c — a worker thread's own connections, opened when first needed. See app.h. */
#include "app.h"
#include "log.h"
#include "store.h"

struct store *worker_store(struct worker *w)
{
	struct store_config sc;
	char err[256];

	if (w->store == NULL) {
		cfg_store_config(w->app->cfg, &sc);
		w->store = store_open_config(&sc, err, sizeof err);
		if (w->store == NULL)
			log_msg(LOG_ERROR, "opening the database: %s", err);
	}
	return w->store;
}
