/* api_info.c — GET / and GET /health: cheap answers, no Bot API call; and what they and
 * POST /send-otp say of otp-deleter. */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "policy.h"
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

/* A heartbeat from the future is logged once until the beats are fresh again. */
static atomic_int future_beat_logged;

int api_deleter_alive(struct worker *w, int64_t *age_ms)
{
	struct store *s = worker_store(w);
	int64_t beat = 0, now = clock_now_ms();
	int rc;

	*age_ms = -1;
	if (s == NULL)
		return -1;
	rc = store_heartbeat_get(s, POLICY_DELETER_NAME, &beat);
	if (rc < 0) {
		log_msg(LOG_ERROR, "reading the deleter's heartbeat: %s", store_strerror(s));
		return -1;
	}
	if (rc == 0)
		return 0;
	*age_ms = now - beat;
	return api_deleter_beat(w, 1, *age_ms);
}

int api_deleter_beat(struct worker *w, int found, int64_t age_ms)
{
	if (!found)
		return 0;
	switch (policy_heartbeat(age_ms, (int64_t)w->app->cfg->heartbeat_stale_s * 1000)) {
	case POLICY_BEAT_FRESH:
		atomic_store(&future_beat_logged, 0);
		return 1;
	case POLICY_BEAT_FROM_THE_FUTURE:
		if (atomic_exchange(&future_beat_logged, 1) == 0)
			log_json(LOG_ERROR,
				 "otp-deleter's heartbeat is in the future: taken as stale (a clock "
				 "ahead, or an edited store); no OTP is sent until a fresh beat",
				 json_pack("{s:I}", "ahead_ms", (json_int_t)-age_ms));
		return 0;
	default:
		return 0;
	}
}

#define DELETER_DOWN "Message deletion is not running (otp-deleter's heartbeat is stale); no " \
		     "OTP is sent until it is back"
/* one user must own the SQLite database's directory (store.h), so two users cannot share one:
 * the fix is one user for both programs, or a store that is not a file */
#define DELETER_OTHER_USER                                                                     \
	"Message deletion is not running for this database: otp-deleter runs as another user, "   \
	"with a database of its own. Both programs must run as one user: have the web server run " \
	"otp-fcgi as the account's user (suEXEC), or run otp-deleter as the web server's user; "   \
	"or give both one Redis store (OTP_STORE). No OTP is sent until then"

const char *api_deleter_down_detail(struct worker *w)
{
	static atomic_int logged; /* one line per process is enough to be found */
	const struct cfg *cfg = w->app->cfg;
	char dir[PATH_MAX];
	long uid = cfg_other_users_deleter(cfg, (int64_t)cfg->heartbeat_stale_s * 1000, dir,
					   sizeof dir);

	if (uid < 0)
		return DELETER_DOWN;
	if (atomic_exchange(&logged, 1) == 0)
		log_msg(LOG_WARNING, "otp-deleter runs as uid %ld (its database directory %s is "
				     "live) while otp-fcgi runs as uid %ld with %s: they do not share "
				     "a database; run both as one user (the web server running "
				     "otp-fcgi as the account's user: suEXEC), or give both one Redis "
				     "store (OTP_STORE)",
			uid, dir, (long)geteuid(), cfg->db_path);
	return DELETER_OTHER_USER;
}

/* Seconds left of Telegram's pause of kind (0 when none), or -1 when it cannot be read. */
static double pause_left_s(struct worker *w, struct store *s, enum policy_pause_kind kind,
			   int64_t now)
{
	int64_t until = 0;

	if (s == NULL || policy_paused_until(&w->app->policy, s, kind, now, &until) != 0)
		return -1;
	return until > now ? (double)(until - now) / 1000.0 : 0;
}

void api_health(struct worker *w, const struct request *req, struct response *resp)
{
	char stamp[CLOCK_ISO_LEN];
	struct store *s = worker_store(w);
	const char *db = "ok", *deleter = "ok", *sends = "ok", *failed = NULL;
	int64_t age_ms, now = clock_now_ms();
	double send_pause, delete_pause;
	int alive;
	json_t *body;

	(void)req;
	/* the database check writes, because sending needs writes */
	if (s == NULL || store_heartbeat_set(s, POLICY_FCGI_NAME, now) != 0) {
		if (s != NULL)
			log_msg(LOG_ERROR, "health: database not writable: %s", store_strerror(s));
		/* a shared Redis fails by being out of reach; a SQLite file by refusing writes */
		db = s != NULL && store_is_shared(s) ? "unreachable" : "unwritable";
		failed = "database";
	}
	alive = api_deleter_alive(w, &age_ms);
	if (alive != 1) {
		deleter = alive < 0 ? "unknown" : age_ms < 0 ? "never_started" : "stale";
		if (failed == NULL)
			failed = "deleter";
	}
	/* a pause a send outwaits is normal; one longer than the send wait stops sending */
	send_pause = pause_left_s(w, s, POLICY_PAUSE_SEND, now);
	delete_pause = pause_left_s(w, s, POLICY_PAUSE_DELETE, now);
	if (send_pause * 1000 > (double)w->app->policy.send_wait_ms) {
		sends = "paused";
		if (failed == NULL)
			failed = "telegram_sends";
	}
	clock_format_utc(now / 1000, stamp);
	body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "status",
			 failed == NULL ? "ok" : "degraded", "timestamp", stamp, "version",
			 SERVICE_VERSION, "mode", w->app->cfg->sandbox ? "sandbox" : "live",
			 "checks", "database", db, "deleter", deleter, "telegram_sends", sends);
	if (age_ms >= 0)
		json_object_set_new(body, "deleter_heartbeat_age_seconds",
				    json_real((double)age_ms / 1000.0));
	if (send_pause > 0)
		json_object_set_new(body, "telegram_send_pause_seconds", json_real(send_pause));
	if (delete_pause > 0)
		json_object_set_new(body, "telegram_delete_pause_seconds",
				    json_real(delete_pause));
	if (failed != NULL)
		json_object_set_new(body, "failed_check", json_string(failed));
	if (alive == 0 && strcmp(failed, "deleter") == 0)
		json_object_set_new(body, "detail", json_string(api_deleter_down_detail(w)));
	else if (sends[0] == 'p' && strcmp(failed, "telegram_sends") == 0)
		json_object_set_new(body, "detail",
				    json_string("Telegram's flood control (a 429 on sendMessage) has "
						"paused sending; POST /send-otp answers 503 until "
						"the pause ends"));
	http_respond(resp, failed == NULL ? 200 : 503, body);
}
