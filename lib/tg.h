/* tg.h — the Telegram Bot API client (libcurl). The only module that sees the bot token and the
 * token-bearing method URLs ($TELEGRAM_API_BASE/bot$TOKEN/METHOD); nothing it returns or logs
 * contains either. One handle per thread: it keeps its HTTPS connection alive between calls. */
#ifndef OTP_TG_H
#define OTP_TG_H

#include <signal.h>
#include <stddef.h>

/* What came of one Bot API call. Callers decide per method what each means for them. */
enum tg_status {
	TG_OK,           /* Telegram did it */
	TG_NOT_FOUND,    /* "message to delete not found": already gone */
	TG_REFUSED,      /* an error that repeating the same call will not fix (400, 403, …) */
	TG_RETRY_AFTER,  /* 429 flood control: wait retry_after_s seconds */
	TG_SERVER_ERROR, /* 5xx, or a reply that is not the Bot API's JSON */
	TG_TIMEOUT,      /* no complete answer in time: the call may or may not have taken effect */
	TG_UNREACHABLE,  /* nothing was sent: could not connect (refused, DNS, TLS) */
	TG_NO_ANSWER,    /* the connection broke after the request went out: it may have taken effect */
};

struct tg_result {
	enum tg_status status;
	long http_status;        /* 0 when no HTTP answer came */
	int error_code;          /* Telegram's error_code, or 0 */
	int retry_after_s;       /* for TG_RETRY_AFTER */
	long long message_id;    /* sendMessage: the new message's id */
	char description[256];   /* Telegram's description, or our reason; never holds the token */
};

struct tg;

/* Once per process, before threads start (curl_global_init is not thread-safe). */
int tg_global_init(void);
void tg_global_cleanup(void);

/* A client for api_base ("https://api.telegram.org") and token. NULL on failure (no memory). */
struct tg *tg_new(const char *api_base, const char *token, long timeout_ms);
void tg_free(struct tg *tg);

/* From now on sendMessage asks for paid broadcast (allow_paid_broadcast: up to 1,000 messages
 * per second, each paid in Telegram Stars from the bot's balance). */
void tg_set_paid_broadcast(struct tg *tg, int on);

/* sendMessage with parse_mode HTML and protect_content. text holds the OTP: every buffer this
 * call fills with it (the request and Telegram's echo of it) is wiped before return. */
enum tg_status tg_send_message(struct tg *tg, const char *chat_id, const char *html_text,
			       struct tg_result *res);

/* deleteMessage. */
enum tg_status tg_delete_message(struct tg *tg, const char *chat_id, long long message_id,
				 struct tg_result *res);

/* Concurrent calls over one pool of kept-alive connections (curl's multi interface), for
 * otp-deleter: a real Bot API call takes 100-500 ms, so deletions one at a time fall behind. */
struct tg_batch;

#define TG_DELETE_MESSAGES_MAX 100

/* Called for each finished call with the tag it was queued with. Returning nonzero starts no
 * further queued call (e.g. after a 429); the calls under way still finish. Calls dropped
 * without being started are reported with res == NULL (so the caller can free their tags); the
 * return value is then ignored. */
typedef int (*tg_batch_done_fn)(void *ctx, void *tag, const struct tg_result *res);
/* Called with the same ctx at least every 50 ms while calls run (heartbeats, and queueing more
 * calls with tg_batch_add_delete: the batch then runs them too). */
typedef void (*tg_batch_tick_fn)(void *ctx);

/* A batch that runs up to max_parallel calls at once with tg's address, token and timeout.
 * tg must outlive it. NULL when out of memory. */
struct tg_batch *tg_batch_new(struct tg *tg, int max_parallel);
void tg_batch_free(struct tg_batch *b);

/* Queues the deletion of ids[0..n) in chat_id: deleteMessage for one id, deleteMessages for
 * 2..TG_DELETE_MESSAGES_MAX. Returns 0, or -1 (n out of range, no memory). */
int tg_batch_add_delete(struct tg_batch *b, const char *chat_id, const long long *ids, int n,
			void *tag);

/* Runs the queued calls, and those queued meanwhile, and reports each to done(). Returns once
 * no call is running and none is queued, or *stop is nonzero or done() asked and every call
 * under way has finished; calls never started are then dropped (reported with res == NULL).
 * Returns the number of calls that ran. */
int tg_batch_run(struct tg_batch *b, tg_batch_done_fn done, tg_batch_tick_fn tick, void *ctx,
		 const volatile sig_atomic_t *stop);

/* Reads a Bot API reply (status and body) into res. Exposed for unit tests. */
void tg_parse_reply(long http_status, const char *body, size_t len, struct tg_result *res);

/* "ok", "not_found", "refused", "retry_after", "server_error", "timeout", "unreachable",
 * "no_answer". */
const char *tg_status_name(enum tg_status st);

/* Appends s as a JSON string literal (with quotes) to buf at *len, within cap.
 * Returns 0, or -1 if it does not fit. */
int tg_json_quote(char *buf, size_t cap, size_t *len, const char *s);

#endif
