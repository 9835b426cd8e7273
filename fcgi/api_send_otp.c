/* api_send_otp.c — POST /send-otp: validate, check the deleter is alive, take rate-limit slots,
 * send with sendMessage, record (chat_id, message_id, delete_at) for otp-deleter.
 *
 * The order keeps the promise that no code is sent that nobody will delete: slots are taken
 * (a write) before the send; after Telegram confirms, the pending row is written; if that write
 * fails, the message is deleted at once and the client gets 500. The one window that cannot be
 * closed: Telegram delivered but its answer was lost (504): the message id is then unknown. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
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
	default: return "telegram_refused";
	}
}

static void answer_validation(struct response *resp, json_t *detail)
{
	http_respond(resp, 422, json_pack("{s:o}", "detail", detail));
}

/* 429 in the original's words; Retry-After in whole seconds, rounded up. */
static void answer_rate_limited(const struct cfg *cfg, int rule, int64_t retry_ms,
				struct response *resp)
{
	char detail[160];

	if (rule == 0 && cfg->rate_limit_window_s == cfg->rate_limit_window_hours * 3600)
		snprintf(detail, sizeof detail, "Rate limit exceeded. Maximum %d OTPs per %d hour(s)",
			 cfg->rate_limit_per_user, cfg->rate_limit_window_hours);
	else if (rule == 0)
		snprintf(detail, sizeof detail,
			 "Rate limit exceeded. Maximum %d OTPs per %d second(s)",
			 cfg->rate_limit_per_user, cfg->rate_limit_window_s);
	else
		snprintf(detail, sizeof detail,
			 "Rate limit exceeded. Maximum %d requests per minute from this IP address",
			 cfg->rate_limit_per_ip);
	resp->retry_after_s = (long)((retry_ms + 999) / 1000);
	http_respond_detail(resp, 429, detail);
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
		http_respond_failure(resp, 504, "Telegram is unreachable");
		break;
	case TG_NO_ANSWER:
		http_respond_failure(resp, 504, "Telegram closed the connection without answering");
		break;
	default: /* refused, not found, server error */
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

/* The pending row could not be written: take the message back at once rather than leave a code
 * nobody will delete. */
static void undo_send(struct worker *w, const char *chat_id, long long message_id,
		      struct response *resp)
{
	struct tg_result res;

	tg_delete_message(w->tg, chat_id, message_id, &res);
	if (res.status == TG_OK || res.status == TG_NOT_FOUND)
		log_json(LOG_ERROR, "pending row not written: message deleted at once",
			 json_pack("{s:s, s:I}", "chat_id", resp->chat_id_masked,
				   "message_id", (json_int_t)message_id));
	else
		log_json(LOG_ERROR, "pending row not written and the message could not be deleted",
			 json_pack("{s:s, s:I, s:s}", "chat_id", resp->chat_id_masked,
				   "message_id", (json_int_t)message_id, "error",
				   res.description));
	http_respond_failure(resp, 500,
			     "The message could not be recorded for deletion and was withdrawn");
}

static void answer_sent(const struct send_otp_request *r, int64_t confirmed_ms,
			long long message_id, struct response *resp)
{
	char sent_at[CLOCK_ISO_LEN], delete_at[CLOCK_ISO_LEN];
	int64_t sent_s = confirmed_ms / 1000;

	clock_format_utc(sent_s, sent_at);
	clock_format_utc(sent_s + r->expire_seconds, delete_at);
	http_respond(resp, 200,
		     json_pack("{s:b, s:I, s:s, s:s, s:s}", "success", 1, "message_id",
			       (json_int_t)message_id, "sent_at", sent_at, "delete_at", delete_at,
			       "chat_id", r->chat_id));
}

/* Waits (at most TELEGRAM_SEND_WAIT_MS) until Telegram may be called: no flood-control pause
 * is on (a 429 any process got) and the bot's send budget, shared by every process, has a slot
 * in the current second. Returns 0 when a slot was taken, 1 when the wait would be too long
 * (*retry_after_ms set), -1 on a store error. */
static int wait_for_send_slot(const struct cfg *cfg, struct store *s, int64_t *retry_after_ms)
{
	const struct store_rate_rule budget = { "send", "bot", cfg->max_sends_per_second, 1000 };
	int64_t deadline = clock_mono_ms() + cfg->send_wait_ms, now, until, wait;
	struct store_rate_verdict v;

	for (;;) {
		now = clock_now_ms();
		until = 0;
		if (store_pause_get(s, &until) < 0)
			return -1;
		if (until > now) {
			wait = until - now;
		} else {
			if (store_rate_take(s, &budget, 1, now, &v) != 0)
				return -1;
			if (v.refused_rule < 0)
				return 0;
			wait = v.retry_after_ms;
		}
		if (clock_mono_ms() + wait > deadline) {
			*retry_after_ms = wait;
			return 1;
		}
		clock_sleep_ms(wait);
	}
}

/* Sends r and answers; the rate-limit slots in v are given back if nothing reached Telegram. */
static void send_and_record(struct worker *w, struct store *s, const struct send_otp_request *r,
			    const struct store_rate_verdict *v, struct response *resp)
{
	const struct cfg *cfg = w->app->cfg;
	char *text = NULL;
	struct tg_result res;
	int64_t confirmed_ms, wait_ms = 0;

	text = malloc(MESSAGE_MAX);
	if (text == NULL || message_render(cfg->message_template, r->otp, r->expire_seconds, text,
					   MESSAGE_MAX) != 0) {
		store_rate_release(s, v);
		count_failure("internal");
		http_respond_failure(resp, 500, "The message could not be rendered");
		goto out;
	}
	if (atomic_load(&w->app->stopping)) {
		store_rate_release(s, v);
		count_failure("shutting_down");
		resp->retry_after_s = 1;
		http_respond_failure(resp, 503, "The gateway is restarting; retry in a moment");
		goto out;
	}
	switch (wait_for_send_slot(cfg, s, &wait_ms)) {
	case 0:
		break;
	case 1:
		store_rate_release(s, v);
		count_failure("send_budget");
		resp->retry_after_s = (long)((wait_ms + 999) / 1000);
		http_respond_failure(resp, 503, "Telegram's sending limit is reached; retry shortly");
		goto out;
	default:
		log_msg(LOG_ERROR, "taking a send slot: %s", store_strerror(s));
		store_rate_release(s, v);
		count_failure("store_error");
		http_respond_failure(resp, 500, "The database is unavailable");
		goto out;
	}
	tg_send_message(w->tg, r->chat_id, text, &res);
	confirmed_ms = clock_now_ms();
	if (res.status == TG_RETRY_AFTER &&
	    store_pause_extend(s, confirmed_ms + (int64_t)res.retry_after_s * 1000, "otp-fcgi") != 0)
		log_msg(LOG_ERROR, "recording Telegram's pause: %s", store_strerror(s));
	if (res.status != TG_OK) {
		/* 503s are ours and do not count; nothing was delivered when unreachable */
		if (res.status == TG_RETRY_AFTER || res.status == TG_UNREACHABLE)
			store_rate_release(s, v);
		log_json(LOG_WARNING, "sendMessage failed",
			 json_pack("{s:s, s:s, s:i, s:s}", "chat_id", resp->chat_id_masked,
				   "result", tg_status_name(res.status), "telegram_error_code",
				   res.error_code, "error", res.description));
		count_failure(failure_reason(res.status));
		answer_telegram_failure(&res, resp);
		goto out;
	}
	if (store_pending_add(s, r->chat_id, res.message_id,
			      confirmed_ms + (int64_t)r->expire_seconds * 1000) != 0) {
		log_msg(LOG_ERROR, "recording a pending deletion: %s", store_strerror(s));
		undo_send(w, r->chat_id, res.message_id, resp);
		count_failure("store_error");
		goto out;
	}
	log_json(LOG_INFO, "OTP sent successfully",
		 json_pack("{s:s, s:I, s:i}", "chat_id", resp->chat_id_masked, "message_id",
			   (json_int_t)res.message_id, "expire_seconds", r->expire_seconds));
	metrics_count("otp_sent_total", "", 1);
	answer_sent(r, confirmed_ms, res.message_id, resp);
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
	struct store_rate_rule rules[2];
	struct store_rate_verdict v;
	struct store *s;
	json_t *detail;
	int64_t age_ms;
	char subject[CHAT_ID_MAX];
	int nrules = 1, alive;
	size_t i;

	if (validate_send_otp(req->body, req->body_len, &lim, &r, &detail) != 0) {
		answer_validation(resp, detail);
		count_failure("validation_error");
		return;
	}
	log_mask_chat_id(r.chat_id, resp->chat_id_masked);

	alive = api_deleter_alive(w, &age_ms);
	if (alive != 1 || (s = worker_store(w)) == NULL) {
		count_failure(alive < 0 ? "store_error" : "deleter_down");
		if (alive < 0)
			http_respond_failure(resp, 500, "The database is unavailable");
		else {
			resp->retry_after_s = 5;
			http_respond_failure(resp, 503,
					     "Message deletion is not running (otp-deleter's heartbeat is "
					     "stale); no OTP is sent until it is back");
		}
		goto out;
	}

	/* @usernames are case-insensitive: "@Name" and "@name" are one chat to the limit */
	for (i = 0; r.chat_id[i] != '\0'; i++)
		subject[i] = r.chat_id[0] == '@' ? (char)tolower((unsigned char)r.chat_id[i])
						 : r.chat_id[i];
	subject[i] = '\0';
	rules[0] = (struct store_rate_rule){ "chat", subject, cfg->rate_limit_per_user,
					     (int64_t)cfg->rate_limit_window_s * 1000 };
	if (cfg->rate_limit_per_ip > 0 && req->remote_addr[0] != '\0')
		rules[nrules++] = (struct store_rate_rule){ "ip", req->remote_addr,
							    cfg->rate_limit_per_ip, 60 * 1000 };
	if (store_rate_take(s, rules, nrules, clock_now_ms(), &v) != 0) {
		log_msg(LOG_ERROR, "taking a rate-limit slot: %s", store_strerror(s));
		count_failure("store_error");
		http_respond_failure(resp, 500, "The database is unavailable");
		goto out;
	}
	if (v.refused_rule >= 0) {
		log_json(LOG_INFO, "rate limit exceeded",
			 json_pack("{s:s, s:s}", "chat_id", resp->chat_id_masked, "limit",
				   rules[v.refused_rule].scope));
		metrics_count("rate_limit_exceeded_total", "", 1);
		count_failure("rate_limited");
		answer_rate_limited(cfg, v.refused_rule, v.retry_after_ms, resp);
		goto out;
	}
	send_and_record(w, s, &r, &v, resp);
out:
	secmem_wipe(&r, sizeof r);
}
