/* api_send_otp.c — POST /send-otp: validate → admit (otp-deleter alive, the rate limits, a turn
 * in the bot's send queue: lib/policy.h) → wait for the turn → send with sendMessage → record
 * (chat_id, message_id, delete_at) for otp-deleter → answer.
 *
 * The order keeps the promise that no code is sent that nobody will delete: the limits and the
 * turn are taken (one write) before the send; after Telegram confirms, the pending row is
 * written; if that write fails, the message is deleted at once and the client gets 500 (503 with
 * a shared store, Redis, whose failures pass: an outage, a failover, too few replicas holding the
 * row). The one window that cannot be closed: Telegram delivered but its answer was lost (504):
 * the message id is then unknown.
 *
 * Store transactions of a send: the admission (one write, which reads the heartbeat and the
 * pause too); Telegram's pause read again only after a wait for the turn; the pending row,
 * committed with other sends' rows (recorder.h). A requeue after a stall, a 429's pause and a
 * give-back when nothing reached Telegram cost one more each.
 *
 * No store is held while the request waits (for its turn, for Telegram): worker_store() takes
 * one from the process's pool for each run of store calls, worker_store_give() gives it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"
#include "recorder.h"
#include "secmem.h"
#include "store.h"
#include "tg.h"
#include "validate.h"

/* otp_failed_total{reason}: why a request did not end in a sent message. */
static void count_failure(const char *reason)
{
	char labels[64];

	snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
	metrics_count("otp_failed_total", labels, 1);
}

static const char *failure_reason(enum tg_status st)
{
	switch (st) {
	case TG_RETRY_AFTER: return "telegram_rate_limited";
	case TG_TIMEOUT: return "telegram_timeout";
	case TG_UNREACHABLE: return "telegram_unreachable";
	case TG_NO_ANSWER: return "telegram_no_answer";
	case TG_SERVER_ERROR: return "telegram_unavailable";
	case TG_BAD_REPLY: return "telegram_bad_reply";
	default: return "telegram_refused";
	}
}

static void answer_validation(struct response *resp, json_t *detail)
{
	http_respond(resp, 422, json_pack("{s:o}", "detail", detail));
}

/* 429 in the original's words; Retry-After in whole seconds, rounded up. */
static void answer_rate_limited(const struct cfg *cfg, enum policy_scope scope, int key_limit,
				int64_t retry_ms, struct response *resp)
{
	char detail[160];

	if (scope == POLICY_SCOPE_CHAT &&
	    cfg->rate_limit_window_s == cfg->rate_limit_window_hours * 3600)
		snprintf(detail, sizeof detail, "Rate limit exceeded. Maximum %d OTPs per %d hour(s)",
			 cfg->rate_limit_per_user, cfg->rate_limit_window_hours);
	else if (scope == POLICY_SCOPE_CHAT)
		snprintf(detail, sizeof detail,
			 "Rate limit exceeded. Maximum %d OTPs per %d second(s)",
			 cfg->rate_limit_per_user, cfg->rate_limit_window_s);
	else if (scope == POLICY_SCOPE_IP)
		snprintf(detail, sizeof detail,
			 "Rate limit exceeded. Maximum %d requests per minute from this IP address",
			 cfg->rate_limit_per_ip);
	else
		snprintf(detail, sizeof detail,
			 "Rate limit exceeded. Maximum %d OTPs per minute for this API key", key_limit);
	resp->retry_after_s = (long)((retry_ms + 999) / 1000);
	http_respond_detail(resp, 429, detail);
}

/* 503: no send now. The send queue has no turn within TELEGRAM_SEND_WAIT_MS, or Telegram's
 * flood control (a 429 any process got on sendMessage) pauses sends for longer. */
static void answer_busy(enum policy_verdict why, int64_t retry_ms, struct response *resp)
{
	resp->retry_after_s = (long)((retry_ms + 999) / 1000);
	if (why == POLICY_SENDS_PAUSED) {
		count_failure("telegram_paused");
		http_respond_failure(resp, 503,
				     "Telegram's flood control has paused sending; retry later");
	} else {
		count_failure("send_budget");
		http_respond_failure(resp, 503, "Telegram's sending limit is reached; retry shortly");
	}
}

/* 503: the store (a Redis server other hosts share, or the database) failed or answered what it
 * cannot have meant: fail closed, nothing is sent that could not be recorded for deletion. */
static void answer_store_down(struct response *resp)
{
	count_failure("store_error");
	resp->retry_after_s = 1;
	http_respond_failure(resp, 503, "The store is unreachable; no OTP is sent until it is back");
}

static void answer_telegram_failure(const struct tg_result *res, struct response *resp)
{
	json_t *body;

	switch (res->status) {
	case TG_RETRY_AFTER:
		resp->retry_after_s = res->retry_after_s;
		body = json_pack("{s:b, s:s, s:i}", "success", 0, "detail", res->description,
				 "telegram_error_code", res->error_code);
		http_respond(resp, 503, body);
		break;
	case TG_TIMEOUT:
		http_respond_failure(resp, 504, "Telegram did not answer in time");
		break;
	case TG_UNREACHABLE:
		if (res->untrusted_certificate) /* a gateway in front answered, and is not Telegram */
			http_respond_failure(resp, 502, res->description);
		else
			http_respond_failure(resp, 504, "Telegram is unreachable");
		break;
	case TG_NO_ANSWER:
		http_respond_failure(resp, 504, "Telegram closed the connection without answering");
		break;
	default: /* refused, not found, server error, a reply we cannot use */
		body = json_pack("{s:b, s:s}", "success", 0, "detail", res->description);
		if (body == NULL) { /* a description jansson refuses (not UTF-8) */
			http_respond_failure(resp, 502, "Telegram refused the message");
			break;
		}
		if (res->error_code != 0)
			json_object_set_new(body, "telegram_error_code",
					    json_integer(res->error_code));
		http_respond(resp, 502, body);
		break;
	}
}

/* The pending row could not be written (or, with Redis, not by enough replicas in time): take
 * the message back at once rather than leave a code nobody will delete. A shared store (Redis)
 * that fails is out of reach or failing over, which passes: 503 with Retry-After; SQLite's
 * failure is the host's (a full or broken disk): 500. */
static void undo_send(struct worker *w, const char *chat_id, long long message_id,
		      struct response *resp)
{
	int shared = w->app->cfg->store_is_shared;
	struct tg_result res;

	worker_store_give(w);
	tg_delete_message(w->tg, chat_id, message_id, &res);
	metrics_observe_bot_call(&res);
	if (policy_deletion_outcome(&res) == POLICY_DELETION_DONE)
		log_json(LOG_ERROR, "pending row not written: message deleted at once",
			 json_pack("{s:s, s:I}", "chat_id", resp->chat_id_masked,
				   "message_id", (json_int_t)message_id));
	else
		log_json(LOG_ERROR, "pending row not written and the message could not be deleted",
			 json_pack("{s:s, s:I, s:s}", "chat_id", resp->chat_id_masked,
				   "message_id", (json_int_t)message_id, "error",
				   res.description));
	if (shared)
		resp->retry_after_s = 1;
	http_respond_failure(resp, shared ? 503 : 500,
			     "The message could not be recorded for deletion and was withdrawn");
}

/* The answer is built from the deletion instant the store keeps (on the store's clock, shared by
 * every host): sent_at is that instant less expire_seconds, truncated to the second, so that the
 * delete_at the client is told is never later than the instant the row is deleted at. */
static void answer_sent(const struct send_otp_request *r, int64_t stored_delete_at_ms,
			long long message_id, struct response *resp)
{
	char sent_at[CLOCK_ISO_LEN], delete_at[CLOCK_ISO_LEN];
	int64_t sent_s = (stored_delete_at_ms - (int64_t)r->expire_seconds * 1000) / 1000;

	clock_format_utc(sent_s, sent_at);
	clock_format_utc(sent_s + r->expire_seconds, delete_at);
	http_respond(resp, 200,
		     json_pack("{s:b, s:I, s:s, s:s, s:s}", "success", 1, "message_id",
			       (json_int_t)message_id, "sent_at", sent_at, "delete_at", delete_at,
			       "chat_id", r->chat_id));
}

/* Gives back what the admission counted (nothing reached Telegram), on whatever store the
 * worker holds or can take. */
static void release(struct worker *w, const struct policy_admission *adm)
{
	struct store *s = worker_store(w);

	if (s != NULL && policy_release(s, adm) != 0)
		log_msg(LOG_WARNING, "giving back a rate-limit slot: %s", store_strerror(s));
}

/* Sleeps until the admitted turn holding no store; takes one only to requeue a thread that woke
 * too late. Returns 0 (holding none), or policy_requeue()'s 1 or -1 (logged). */
static int wait_for_turn(struct worker *w, struct policy_admission *adm)
{
	const struct policy *pol = &w->app->policy;
	struct store *s;
	int rc;

	worker_store_give(w);
	while (policy_sleep_for_turn(pol, adm) != 0) {
		if ((s = worker_store(w)) == NULL)
			return -1;
		rc = policy_requeue(pol, s, adm);
		if (rc < 0)
			log_msg(LOG_ERROR, "taking a new turn to send: %s", store_strerror(s));
		if (rc != 0)
			return rc;
		worker_store_give(w);
	}
	return 0;
}

/* Waits for the admitted turn, sends r and answers; what the admission counted is given back if
 * nothing reached Telegram. */
static void send_and_record(struct worker *w, const struct send_otp_request *r,
			    const struct apikey_match *caller,
			    struct policy_admission *adm, struct response *resp)
{
	const struct cfg *cfg = w->app->cfg;
	const struct policy *pol = &w->app->policy;
	char *text = NULL, chat_key[STORE_CHAT_ID_MAX], err[256];
	struct store_pending_row row;
	struct tg_result res;
	struct store *s;
	int64_t confirmed_ms, until = 0, now;

	text = malloc(MESSAGE_MAX);
	if (text == NULL || message_render(cfg->message_template, r->otp, r->expire_seconds, text,
					   MESSAGE_MAX) != 0) {
		release(w, adm);
		count_failure("internal");
		http_respond_failure(resp, 500, "The message could not be rendered");
		goto out;
	}
	switch (wait_for_turn(w, adm)) {
	case 0:
		break;
	case 1:
		release(w, adm);
		answer_busy(adm->verdict, adm->retry_after_ms, resp);
		goto out;
	default:
		release(w, adm);
		answer_store_down(resp);
		goto out;
	}
	if (atomic_load(&w->app->stopping)) {
		release(w, adm);
		count_failure("shutting_down");
		resp->retry_after_s = 1;
		http_respond_failure(resp, 503, "The gateway is restarting; retry in a moment");
		goto out;
	}
	/* a 429 another send got while this one waited for its turn holds it too */
	now = clock_now_ms();
	if (policy_rereads_pause(adm) &&
	    ((s = worker_store(w)) == NULL ||
	     policy_paused_until(pol, s, POLICY_PAUSE_SEND, now, &until) != 0)) {
		log_msg(LOG_ERROR, "reading Telegram's pause: %s", worker_store_strerror(w));
		release(w, adm);
		answer_store_down(resp);
		goto out;
	}
	if (until > now) {
		release(w, adm);
		answer_busy(POLICY_SENDS_PAUSED, until - now, resp);
		goto out;
	}
	worker_store_give(w);
	tg_send_message(w->tg, r->chat_id, text, &res);
	metrics_observe_bot_call(&res);
	confirmed_ms = clock_now_ms_up(); /* delete_at counts from it */
	if (res.status == TG_RETRY_AFTER) {
		until = policy_pause_end(pol, confirmed_ms, res.retry_after_s);
		if ((s = worker_store(w)) == NULL ||
		    policy_pause(pol, s, POLICY_PAUSE_SEND, res.retry_after_s, confirmed_ms,
				 POLICY_FCGI_NAME, NULL) != 0)
			log_msg(LOG_ERROR, "recording Telegram's pause: %s",
				worker_store_strerror(w));
		/* clamped: a client is never told to wait longer than any process will */
		res.retry_after_s = (int)((until - confirmed_ms + 999) / 1000);
	}
	if (res.status != TG_OK) {
		/* 503s are ours and do not count; nothing was delivered when unreachable */
		if (res.status == TG_RETRY_AFTER || res.status == TG_UNREACHABLE)
			release(w, adm);
		/* a success without a usable message_id may have delivered a code we cannot
		 * delete: that one is an error, the others are Telegram's answers */
		log_json(res.status == TG_BAD_REPLY ? LOG_ERROR : LOG_WARNING,
			 res.status == TG_BAD_REPLY
				 ? "sendMessage: unusable reply; a message may be left undeleted"
				 : "sendMessage failed",
			 json_pack("{s:s, s:s, s:i, s:i, s:s}", "chat_id", resp->chat_id_masked,
				   "result", tg_status_name(res.status), "http_status",
				   (int)res.http_status, "telegram_error_code", res.error_code,
				   "error", res.description));
		count_failure(failure_reason(res.status));
		answer_telegram_failure(&res, resp);
		goto out;
	}
	/* the key that sent it alone may revoke it; the row goes in with other threads' rows,
	 * holding no store meanwhile (recorder.h) */
	row = (struct store_pending_row){
		.ref = { r->chat_id, chat_key, res.message_id,
			 caller->owner[0] != '\0' ? caller->owner : NULL },
		.delete_at_ms = confirmed_ms + (int64_t)r->expire_seconds * 1000 };
	if (policy_chat_subject(r->chat_id, chat_key, sizeof chat_key) != 0) {
		row.failed = 1;
		snprintf(err, sizeof err, "chat id too long for a key");
	} else {
		recorder_add(w->app->recorder, &row, err, sizeof err);
	}
	if (row.failed) {
		log_msg(LOG_ERROR, "recording a pending deletion: %s", err);
		undo_send(w, r->chat_id, res.message_id, resp);
		count_failure("store_error");
		goto out;
	}
	log_json(LOG_INFO, "OTP sent successfully",
		 json_pack("{s:s, s:I, s:i}", "chat_id", resp->chat_id_masked, "message_id",
			   (json_int_t)res.message_id, "expire_seconds", r->expire_seconds));
	metrics_count("otp_sent_total", "", 1);
	if (caller->owner[0] != '\0') {
		char labels[APIKEY_NAME_MAX + 16];

		snprintf(labels, sizeof labels, "key=\"%s\"", caller->owner);
		metrics_count("otp_sent_by_key_total", labels, 1);
	}
	answer_sent(r, row.stored_ms, res.message_id, resp);
out:
	if (text != NULL)
		secmem_wipe(text, MESSAGE_MAX);
	free(text);
}

void api_send_otp(struct worker *w, const struct request *req, struct response *resp)
{
	const struct cfg *cfg = w->app->cfg;
	const struct send_otp_limits lim = { cfg->min_expire_s, cfg->max_expire_s,
					     cfg->default_expire_s };
	struct send_otp_request r;
	struct policy_admission adm;
	struct policy_client client;
	struct store *s;
	json_t *detail;

	if (validate_send_otp(req->body, req->body_len, &lim, &r, &detail) != 0) {
		answer_validation(resp, detail);
		count_failure("validation_error");
		return;
	}
	log_mask_chat_id(r.chat_id, resp->chat_id_masked);

	if ((s = worker_store(w)) == NULL) {
		answer_store_down(resp);
		goto out;
	}
	client = (struct policy_client){ req->remote_addr, req->caller.owner,
					 req->caller.limit_per_minute };
	if (policy_admit(&w->app->policy, s, r.chat_id, &client, clock_now_ms(), &adm) != 0) {
		log_msg(LOG_ERROR, "taking a rate-limit slot: %s", store_strerror(s));
		answer_store_down(resp);
		goto out;
	}
	if (adm.verdict != POLICY_DELETER_DOWN)
		api_deleter_beat(w, 1, 0); /* fresh: re-arms the log of a beat from the future */
	switch (adm.verdict) {
	case POLICY_DELETER_DOWN:
		api_deleter_beat(w, adm.beat_found, adm.beat_age_ms); /* logs one from the future */
		count_failure("deleter_down");
		resp->retry_after_s = 5;
		http_respond_failure(resp, 503, api_deleter_down_detail(w));
		break;
	case POLICY_ADMITTED:
		send_and_record(w, &r, &req->caller, &adm, resp);
		break;
	case POLICY_RATE_LIMITED:
		log_json(LOG_INFO, "rate limit exceeded",
			 json_pack("{s:s, s:s}", "chat_id", resp->chat_id_masked, "limit",
				   policy_scope_name(adm.scope)));
		metrics_count("rate_limit_exceeded_total", "", 1);
		count_failure("rate_limited");
		answer_rate_limited(cfg, adm.scope, policy_key_limit(&w->app->policy, &client),
				    adm.retry_after_ms, resp);
		break;
	case POLICY_QUEUE_FULL:
	case POLICY_SENDS_PAUSED:
		answer_busy(adm.verdict, adm.retry_after_ms, resp);
		break;
	}
out:
	secmem_wipe(&r, sizeof r);
}
