/* api.h — the endpoint handlers, one file each. */
#ifndef OTP_API_H
#define OTP_API_H

#include "app.h"

/* GET /: the service's name, version and paths (the original's info JSON). 200. */
void api_root(struct worker *w, const struct request *req, struct response *resp);

/* GET /health: 200 {"status":"ok",…} or 503 {"status":"degraded",…} naming the failed check. */
void api_health(struct worker *w, const struct request *req, struct response *resp);

/* POST /send-otp: 200, 422, 429, 500, 502, 503, 504 (see docs/api.md). */
void api_send_otp(struct worker *w, const struct request *req, struct response *resp);

/* POST /revoke-otp: 200 deleted now, 202 handed to otp-deleter (Bot API paused, slow or
 * failing), 404 no such pending message, 422, 500 (see docs/api.md). */
void api_revoke_otp(struct worker *w, const struct request *req, struct response *resp);

/* GET /metrics: the Prometheus text of the whole pool's metrics. 200, or 500. */
void api_metrics(struct worker *w, const struct request *req, struct response *resp);

/* Whether otp-deleter's heartbeat is fresh (policy_heartbeat()). Returns 1 fresh, 0 stale, from
 * the future (logged) or missing (with *age_ms set, or -1 when it never beat), -1 on a store
 * error. */
int api_deleter_alive(struct worker *w, int64_t *age_ms);

/* What a heartbeat read elsewhere (POST /send-otp's admission) means: found or not, age_ms old
 * (negative: ahead of now). Returns 1 fresh, 0 not (a beat from the future is logged, once until
 * the beats are fresh again). */
int api_deleter_beat(struct worker *w, int found, int64_t age_ms);

/* Why no OTP is sent while otp-deleter's heartbeat is stale or missing, for a 503's detail.
 * When otp-deleter runs as another user with a database of its own (shared hosting where the
 * web server runs otp-fcgi as its user: cfg_other_users_deleter), says so and names the fix,
 * and logs it (once per process, with the uids and directories the detail keeps to itself). */
const char *api_deleter_down_detail(struct worker *w);

#endif
