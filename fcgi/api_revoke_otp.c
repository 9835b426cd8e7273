/* api_revoke_otp.c — POST /revoke-otp: delete a message this gateway sent before its delete_at,
 * once the code has been used.
 *
 * Only a pending row can be revoked, so nobody can use the gateway to delete other messages;
 * with API keys, only a row the same key sent (another key's is answered as unknown).
 * The row is claimed in the store first (store_pending_claim: out of otp-deleter's reach for a
 * lease longer than one Bot API call), so the revoke and otp-deleter never both delete it.
 * When the Bot API is paused, slow or failing, the row is handed back to otp-deleter, due at
 * once, and the client gets 202: the row is never lost, and a crash mid-call leaves it to
 * otp-deleter when the lease ends. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "tg.h"
#include "validate.h"

/* Longer than any Bot API call (TELEGRAM_TIMEOUT_SECONDS bounds it) plus the store's own waits:
 * otp-deleter takes the row over only when we are surely done with it. */
#define LEASE_MARGIN_MS (STORE_BUSY_TIMEOUT_MS + 5000)

static const char *const not_pending =
	"No pending message with this chat_id and message_id (never sent by this gateway, "
	"or already deleted)";

/* The Bot API's flood control for deletions: a pause any process recorded (its 429). */
static int deletion_paused(const struct policy *p, struct store *s, int64_t now_ms)
{
	int64_t until = 0;

	return policy_paused_until(p, s, POLICY_PAUSE_DELETE, now_ms, &until) == 0 &&
	       until > now_ms;
}

static void log_revoke(const struct response *resp, long long message_id, const char *result,
		       const struct tg_result *res)
{
	json_t *f = json_pack("{s:s, s:I, s:s}", "chat_id", resp->chat_id_masked, "message_id",
			      (json_int_t)message_id, "result", result);

	if (res != NULL && res->status != TG_OK) {
		json_object_set_new(f, "telegram_result", json_string(tg_status_name(res->status)));
		json_object_set_new(f, "telegram_error_code", json_integer(res->error_code));
		json_object_set_new(f, "error", json_string(res->description));
	}
	log_json(res != NULL && res->status != TG_OK && res->status != TG_NOT_FOUND
			 ? LOG_WARNING : LOG_INFO,
		 "OTP revoked", f);
}

/* 202: otp-deleter deletes the message as soon as it may. */
static void answer_scheduled(const struct revoke_otp_request *r, const char *why,
			     struct response *resp)
{
	metrics_count("otp_revoked_total", "result=\"scheduled\"", 1);
	http_respond(resp, 202,
		     json_pack("{s:b, s:s, s:I, s:s}", "success", 1, "chat_id", r->chat_id,
			       "message_id", (json_int_t)r->message_id, "detail", why));
}

static void answer_deleted(const struct revoke_otp_request *r, int64_t confirmed_ms,
			   struct response *resp)
{
	char deleted_at[CLOCK_ISO_LEN];

	clock_format_utc(confirmed_ms / 1000, deleted_at);
	metrics_count("otp_revoked_total", "result=\"deleted\"", 1);
	http_respond(resp, 200,
		     json_pack("{s:b, s:s, s:I, s:s}", "success", 1, "chat_id", r->chat_id,
			       "message_id", (json_int_t)r->message_id, "deleted_at", deleted_at));
}

/* 429 as a send's per-address refusal words it: the two share the limit. */
static void answer_rate_limited(const struct cfg *cfg, int64_t retry_ms, struct response *resp)
{
	char detail[160];

	snprintf(detail, sizeof detail,
		 "Rate limit exceeded. Maximum %d requests per minute from this IP address",
		 cfg->rate_limit_per_ip);
	metrics_count("otp_revoked_total", "result=\"rate_limited\"", 1);
	metrics_count("rate_limit_exceeded_total", "", 1);
	resp->retry_after_s = (long)((retry_ms + 999) / 1000);
	http_respond_detail(resp, 429, detail);
}

/* Hands a pending row to otp-deleter at once (no call of ours) and answers 202, or 404 when
 * there is no such row. */
static void hand_over(struct store *s, const struct revoke_otp_request *r,
		      const struct pending_ref *ref, const char *why, struct response *resp)
{
	const struct store_claim_request claim = policy_claim_request(clock_now_ms(), 0);
	struct pending row;

	switch (store_pending_claim(s, ref, &claim, &row)) {
	case STORE_CLAIM_NONE:
		http_respond_detail(resp, 404, not_pending);
		break;
	case STORE_CLAIM_DUE:
	case STORE_CLAIM_TAKEN:
		log_revoke(resp, r->message_id, "scheduled", NULL);
		answer_scheduled(r, why, resp);
		break;
	default:
		log_msg(LOG_ERROR, "revoking a message: %s", store_strerror(s));
		http_respond_failure(resp, 500, "The database is unavailable");
		break;
	}
}

/* Deletes a claimed row's message now, holding no store during the Bot API call; on any
 * failure gives the row back to otp-deleter. */
static void delete_claimed(struct worker *w, const struct revoke_otp_request *r,
			   const struct pending *row, struct response *resp)
{
	struct tg_result res;
	struct store *s;
	int64_t now;

	worker_store_give(w);
	tg_delete_message(w->tg, row->chat_id, row->message_id, &res);
	metrics_observe_bot_call(&res);
	now = clock_now_ms();
	s = worker_store(w); /* NULL (logged): each use below reports its own failure */
	if (policy_deletion_outcome(&res) == POLICY_DELETION_DONE) {
		/* if this fails the lease runs out and otp-deleter's repeat is answered "not
		 * found", which it counts as done */
		if (s == NULL || store_pending_remove(s, row->id) != 0)
			log_msg(LOG_ERROR, "removing a revoked message's row: %s",
				worker_store_strerror(w));
		log_revoke(resp, r->message_id, "deleted", &res);
		answer_deleted(r, now, resp);
		return;
	}
	if (policy_after_deletion(&w->app->policy, s, &res, now, POLICY_FCGI_NAME, NULL) != 0)
		log_msg(LOG_ERROR, "recording Telegram's pause: %s", worker_store_strerror(w));
	/* a message Telegram will never delete goes back to otp-deleter too, which gives it up
	 * with a log line and a count, as it does every such row; if this fails the row stays
	 * claimed until the lease ends, then otp-deleter has it */
	if (s == NULL || store_pending_release(s, row->id, now) != 0)
		log_msg(LOG_ERROR, "handing a revoked message to otp-deleter: %s",
			worker_store_strerror(w));
	log_revoke(resp, r->message_id, "scheduled", &res);
	answer_scheduled(r,
			 res.status == TG_RETRY_AFTER
				 ? "Telegram asked to wait (flood control); otp-deleter deletes the "
				   "message as soon as the pause ends"
				 : "Telegram did not confirm the deletion; otp-deleter deletes the "
				   "message at once, retrying as needed",
			 resp);
}

void api_revoke_otp(struct worker *w, const struct request *req, struct response *resp)
{
	const struct cfg *cfg = w->app->cfg;
	char chat_key[STORE_CHAT_ID_MAX];
	struct revoke_otp_request r;
	struct policy_admission adm;
	struct policy_client client;
	struct store_claim_request claim;
	struct pending_ref ref;
	struct pending row;
	struct store *s;
	json_t *detail;

	if (validate_revoke_otp(req->body, req->body_len, &r, &detail) != 0) {
		http_respond(resp, 422, json_pack("{s:o}", "detail", detail));
		return;
	}
	log_mask_chat_id(r.chat_id, resp->chat_id_masked);
	/* the key pending rows are found by: an @username whatever its case, as sends wrote it */
	if (policy_chat_subject(r.chat_id, chat_key, sizeof chat_key) != 0) {
		http_respond_detail(resp, 404, not_pending);
		return;
	}
	/* another key's code is not found: 404 as for an unknown one, its existence not told */
	ref = (struct pending_ref){ r.chat_id, chat_key, r.message_id,
				    req->caller.owner[0] != '\0' ? req->caller.owner : NULL };
	if ((s = worker_store(w)) == NULL) {
		http_respond_failure(resp, 500, "The database is unavailable");
		return;
	}
	client = (struct policy_client){ req->remote_addr, NULL, 0 };
	if (policy_admit_revoke(&w->app->policy, s, &client, clock_now_ms(), &adm) != 0) {
		log_msg(LOG_ERROR, "counting a revoke: %s", store_strerror(s));
		http_respond_failure(resp, 500, "The database is unavailable");
		return;
	}
	if (adm.verdict == POLICY_RATE_LIMITED) {
		answer_rate_limited(cfg, adm.retry_after_ms, resp);
		return;
	}
	if (deletion_paused(&w->app->policy, s, clock_now_ms())) {
		hand_over(s, &r, &ref,
			  "Telegram asked to wait (flood control); otp-deleter deletes the message "
			  "as soon as the pause ends",
			  resp);
		return;
	}
	if (atomic_load(&w->app->stopping)) {
		hand_over(s, &r, &ref,
			  "The gateway is restarting; otp-deleter deletes the message at once", resp);
		return;
	}
	claim = policy_claim_request(clock_now_ms(),
				     (int64_t)cfg->telegram_timeout_ms + LEASE_MARGIN_MS);
	switch (store_pending_claim(s, &ref, &claim, &row)) {
	case STORE_CLAIM_NONE:
		http_respond_detail(resp, 404, not_pending);
		break;
	case STORE_CLAIM_DUE:
		/* otp-deleter has it, or another revoke does: a second call would delete twice */
		log_revoke(resp, r.message_id, "scheduled", NULL);
		answer_scheduled(&r,
				 "The message is already being deleted", resp);
		break;
	case STORE_CLAIM_TAKEN:
		delete_claimed(w, &r, &row, resp);
		break;
	default:
		log_msg(LOG_ERROR, "revoking a message: %s", store_strerror(s));
		http_respond_failure(resp, 500, "The database is unavailable");
		break;
	}
}
