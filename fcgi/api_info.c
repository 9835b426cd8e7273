/* api_info.c — GET / and GET /health: cheap answers, no Bot API call. */
#include <stdio.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "store.h"

void api_root(struct worker *w, const struct request *req, struct response *resp)
{
	(void)w;
	(void)req;
	http_respond(resp, 200,
		     json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "service", SERVICE_NAME,
			       "version", SERVICE_VERSION, "docs", "/docs", "redoc", "/redoc",
			       "health", "/health", "metrics", "/metrics", "openapi",
			       "/openapi.json"));
}

int api_deleter_alive(struct worker *w, int64_t *age_ms)
{
	struct store *s = worker_store(w);
	int64_t beat = 0, now = clock_now_ms();
	int rc;

	*age_ms = -1;
	if (s == NULL)
		return -1;
	rc = store_heartbeat_get(s, DELETER_PROGRAM, &beat);
	if (rc < 0) {
		log_msg(LOG_ERROR, "reading the deleter's heartbeat: %s", store_strerror(s));
		return -1;
	}
	if (rc == 0)
		return 0;
	*age_ms = now - beat;
	return *age_ms <= (int64_t)w->app->cfg->heartbeat_stale_s * 1000;
}

void api_health(struct worker *w, const struct request *req, struct response *resp)
{
	char stamp[CLOCK_ISO_LEN];
	struct store *s = worker_store(w);
	const char *db = "ok", *deleter = "ok", *failed = NULL;
	int64_t age_ms;
	int alive;
	json_t *body;

	(void)req;
	/* the database check writes, because sending needs writes */
	if (s == NULL || store_heartbeat_set(s, "otp-fcgi", clock_now_ms()) != 0) {
		if (s != NULL)
			log_msg(LOG_ERROR, "health: database not writable: %s", store_strerror(s));
		db = "unwritable";
		failed = "database";
	}
	alive = api_deleter_alive(w, &age_ms);
	if (alive != 1) {
		deleter = alive < 0 ? "unknown" : age_ms < 0 ? "never_started" : "stale";
		if (failed == NULL)
			failed = "deleter";
	}
	clock_format_utc(clock_now_ms() / 1000, stamp);
	body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "status",
			 failed == NULL ? "ok" : "degraded", "timestamp", stamp, "version",
			 SERVICE_VERSION, "mode", w->app->cfg->sandbox ? "sandbox" : "live",
			 "checks", "database", db, "deleter", deleter);
	if (age_ms >= 0)
		json_object_set_new(body, "deleter_heartbeat_age_seconds",
				    json_real((double)age_ms / 1000.0));
	if (failed != NULL)
		json_object_set_new(body, "failed_check", json_string(failed));
	http_respond(resp, failed == NULL ? 200 : 503, body);
}
