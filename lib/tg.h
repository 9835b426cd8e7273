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
	TG_UNREACHABLE,  /* nothing was sent: could not connect (refused, DNS, TLS). When the
			  * Bot API's certificate did not verify, untrusted_certificate is set */
	TG_NO_ANSWER,    /* the connection broke after the request went out: it may have taken
			  * effect. The request is never sent a second time (see tg_send_message) */
	TG_BAD_REPLY,    /* an answer that cannot be believed: not the Bot API's JSON (below 500), or
			  * a success without what it must carry (sendMessage: a message_id in
			  * [1, TG_MESSAGE_ID_MAX]; deleteMessage(s): result true). It may have taken
			  * effect */
};

/* The methods we call; each has its own rule for what a success carries. */
enum tg_method {
	TG_SEND_MESSAGE,
	TG_DELETE_MESSAGE,
	TG_DELETE_MESSAGES,
};

/* Bounds on numbers from the Bot API, which are untrusted. */
#define TG_MESSAGE_ID_MAX 9007199254740991LL /* 2^53 - 1: exact in every JSON reader */
#define TG_RETRY_AFTER_MAX 2147483           /* s: retry_after saturates here (INT_MAX ms) */
#define TG_DESCRIPTION_MAX 200               /* bytes of Telegram's description kept, then "…" */

struct tg_result {
	enum tg_status status;
	long http_status;        /* 0 when no HTTP answer came */
	int error_code;          /* Telegram's error_code when in 400..599, else the HTTP status when
				  * in 400..599, else 0 */
	int retry_after_s;       /* for TG_RETRY_AFTER: in [1, TG_RETRY_AFTER_MAX] */
	long long message_id;    /* sendMessage with TG_OK: in [1, TG_MESSAGE_ID_MAX] */
	int untrusted_certificate; /* TG_UNREACHABLE because the Bot API's certificate did not
				    * verify against the trusted CAs; description says why */
	/* Telegram's description, or our reason: valid UTF-8 of at most TG_DESCRIPTION_MAX bytes
	 * (plus "…" when cut), without control characters, and never holding the token's secret
	 * or any 4-byte piece of it. Fit for a client's answer and a log line as it is. */
	char description[256];
	enum tg_method method;   /* the call this answers */
	double duration_s;       /* how long the call took, the connection included (0 if it
				  * never started); the caller records it (tg keeps no metrics) */
};

struct tg;

/* Once per process, before threads start (curl_global_init is not thread-safe). */
int tg_global_init(void);
void tg_global_cleanup(void);

/* A client for api_base ("https://api.telegram.org") and token. NULL on failure (no memory). */
struct tg *tg_new(const char *api_base, const char *token, long timeout_ms);
void tg_free(struct tg *tg);

/* Trusts only the CA certificates in the PEM file ca_file (a private CA in front of a
 * self-hosted Bot API server) instead of the system's store. Verification itself is never
 * turned off. Returns 0, or -1 when out of memory. */
int tg_set_ca_file(struct tg *tg, const char *ca_file);

/* From now on sendMessage asks for paid broadcast (allow_paid_broadcast: up to 1,000 messages
 * per second, each paid in Telegram Stars from the bot's balance). */
void tg_set_paid_broadcast(struct tg *tg, int on);

/* sendMessage with parse_mode HTML and protect_content. text holds the OTP: every buffer this
 * call fills with it (the request and Telegram's echo of it) is wiped before return.
 * At most one sendMessage reaches the Bot API per call, whatever the connection does: libcurl
 * would repeat a POST on a fresh connection when a kept-alive one closes after the request went
 * out; this client refuses that (TG_NO_ANSWER instead). */
enum tg_status tg_send_message(struct tg *tg, const char *chat_id, const char *html_text,
			       struct tg_result *res);

/* deleteMessage. Unlike a send, libcurl may repeat it on a fresh connection when a kept-alive
 * one closes after the request went out: a second deletion is answered "not found". */
enum tg_status tg_delete_message(struct tg *tg, const char *chat_id, long long message_id,
				 struct tg_result *res);

/* Concurrent calls over one pool of kept-alive connections (curl's multi interface), for
 * otp-deleter: a real Bot API call takes 100-500 ms, so deletions one at a time fall behind. */
struct tg_batch;

#define TG_DELETE_MESSAGES_MAX 100

/* A call of a batch that is over, as tg_batch_next_done() hands it back: finished, or dropped
 * without being started (a stop, or tg_batch_halt()), so that the caller can free its tag. */
struct tg_done {
	void *tag;               /* as the call was queued with */
	int started;             /* 0: dropped unstarted, res is empty */
	struct tg_result res;
};

/* A batch with tg's address, token and timeout that keeps `steady` connections between calls
 * and runs up to max_parallel calls at once while more are queued (the connections past the
 * steady ones close as their calls end). tg must outlive it. NULL when out of memory. */
struct tg_batch *tg_batch_new(struct tg *tg, int steady, int max_parallel);
void tg_batch_free(struct tg_batch *b);

/* Queues the deletion of ids[0..n) in chat_id: deleteMessage for one id, deleteMessages for
 * 2..TG_DELETE_MESSAGES_MAX. Returns 0, or -1 (n out of range, no memory). */
int tg_batch_add_delete(struct tg_batch *b, const char *chat_id, const long long *ids, int n,
			void *tag);

/* One step of the queued calls, for a caller that drives them from its own loop: starts queued
 * calls (none when stop is nonzero or the batch is halted), lets the running ones progress,
 * then waits at most wait_ms for network activity. The calls that ended are then read with
 * tg_batch_next_done(), after every step; calls queued meanwhile start at the next step.
 * Returns 1 while calls run or wait to start, 0 once the batch is idle: nothing runs and
 * nothing is queued, or stop / a halt and every call under way has finished; calls never
 * started are then dropped (read back with started == 0) and the halt is over. */
int tg_batch_step(struct tg_batch *b, int stop, int wait_ms);

/* Moves the next call that is over into *out, in the style of curl_multi_info_read(): returns
 * 1, or 0 when none is left to read. */
int tg_batch_next_done(struct tg_batch *b, struct tg_done *out);

/* Starts no further queued call until the batch is idle (e.g. Telegram answered 429); the
 * calls under way still finish. */
void tg_batch_halt(struct tg_batch *b);

/* The method's name in the Bot API ("sendMessage"), e.g. for a metric's label. */
const char *tg_method_name(enum tg_method method);

/* Reads the Bot API's reply to method (HTTP status and body) into res, which it clears first.
 * Every number is range-checked and the description cleaned with tg_clean_text (token may be
 * NULL). Exposed for unit tests and fuzzing. */
void tg_parse_reply(enum tg_method method, long http_status, const char *body, size_t len,
		    const char *token, struct tg_result *res);

/* Writes src[0..len) to dst (cap >= 4 bytes; the result is NUL-terminated) fit for a client's
 * answer or a log line: invalid UTF-8 becomes '?', control characters (C0, DEL, C1, line and
 * paragraph separators, bidirectional overrides) become spaces, every run of 4 or more bytes of
 * token's secret (the part after its last ':', or all of it) becomes "***" (token may be NULL),
 * and the result is cut on a character boundary to TG_DESCRIPTION_MAX bytes, then "…". Only
 * the first 1 KiB of src is read. */
void tg_clean_text(char *dst, size_t cap, const char *src, size_t len, const char *token);

/* "ok", "not_found", "refused", "retry_after", "server_error", "timeout", "unreachable",
 * "no_answer", "bad_reply". */
const char *tg_status_name(enum tg_status st);

/* Appends s as a JSON string literal (with quotes) to buf at *len, within cap.
 * Returns 0, or -1 if it does not fit. */
int tg_json_quote(char *buf, size_t cap, size_t *len, const char *s);

#endif
