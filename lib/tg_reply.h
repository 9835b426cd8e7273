/* tg_reply.h — what a Bot API call came to, and reading Telegram's replies into it. Pure: no
 * I/O and no libcurl, so that the unit tests and fuzzers of the reply reading link this alone
 * (with jansson). The transport that fetches the replies is tg.h. */
#ifndef OTP_TG_REPLY_H
#define OTP_TG_REPLY_H

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

/* The method's name in the Bot API ("sendMessage"), e.g. for a metric's label. */
const char *tg_method_name(enum tg_method method);

/* "ok", "not_found", "refused", "retry_after", "server_error", "timeout", "unreachable",
 * "no_answer", "bad_reply". */
const char *tg_status_name(enum tg_status st);

/* Reads the Bot API's reply to method (HTTP status and body) into res, which it clears first.
 * Every number is range-checked and the description cleaned with tg_clean_text (token may be
 * NULL). A sendMessage reply echoes the text, so the OTP: the copies jansson makes of its
 * strings are wiped as it frees them where secmem_install_json_allocator() was called (both
 * programs call it); the caller wipes body. */
void tg_parse_reply(enum tg_method method, long http_status, const char *body, size_t len,
		    const char *token, struct tg_result *res);

/* Writes src[0..len) to dst (cap >= 4 bytes; the result is NUL-terminated) fit for a client's
 * answer or a log line: invalid UTF-8 becomes '?', control characters (C0, DEL, C1, line and
 * paragraph separators, bidirectional overrides) become spaces, every run of 4 or more bytes of
 * token's secret (the part after its last ':', or all of it) becomes "***" (token may be NULL),
 * and the result is cut on a character boundary to TG_DESCRIPTION_MAX bytes, then "…". Only
 * the first 1 KiB of src is read. */
void tg_clean_text(char *dst, size_t cap, const char *src, size_t len, const char *token);

#endif
