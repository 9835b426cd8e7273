/* tg.c — the Bot API client. See tg.h. */
#define _GNU_SOURCE
#include "tg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "secmem.h"

#define REPLY_MAX (64 * 1024)
#define REPLY_INLINE 1024
/* the rendered text is at most ~3 KiB (MESSAGE_TEMPLATE's limit); JSON-escaped, 6 times that */
#define REQUEST_MAX 32768

struct tg {
	CURL *curl;
	char *url_prefix;   /* api_base + "/bot" + token + "/": secret */
	char *token;        /* to scrub from curl's messages */
	long timeout_ms;
	char *ca_file;      /* TELEGRAM_CA_FILE, or NULL: the system's store */
	int paid_broadcast;   /* sendMessage with allow_paid_broadcast */
	struct curl_slist *headers;
};

/* One call's exchange with the Bot API: the request body, handed to curl as it asks for it, and
 * the reply. Reading the body ourselves is what lets us see whether the request may have gone
 * out (went_out) and refuse to let curl send it twice. */
struct exchange {
	const char *body;  /* not owned */
	size_t body_len;
	size_t body_given; /* bytes of body handed to curl in the current attempt */
	int went_out;      /* some of the body was handed to curl, in any attempt */
	int at_most_once;  /* sendMessage: never a second attempt once the body went out.
			    * deleteMessage(s) may be repeated: a repeat is answered "not found" */
	char *reply;       /* inline_reply, or a heap buffer grown up to REPLY_MAX */
	size_t reply_cap;
	size_t reply_len;
	int overflow;
	/* replies are a few hundred bytes: hundreds of calls in flight each holding REPLY_MAX
	 * would be most of the programs' memory */
	char inline_reply[REPLY_INLINE];
};

/* NULL when out of memory. */
static struct exchange *exchange_new(void)
{
	struct exchange *ex = calloc(1, sizeof *ex);

	if (ex != NULL) {
		ex->reply = ex->inline_reply;
		ex->reply_cap = sizeof ex->inline_reply;
	}
	return ex;
}

static void exchange_free(struct exchange *ex)
{
	if (ex == NULL)
		return;
	secmem_wipe(ex->reply, ex->reply_len);
	if (ex->reply != ex->inline_reply)
		free(ex->reply);
	free(ex);
}

/* Room for need bytes in ex->reply, or for as many as REPLY_MAX allows. The old buffer is wiped
 * (a sendMessage reply echoes the text). Returns 0, or -1 when out of memory. */
static int grow_reply(struct exchange *ex, size_t need)
{
	size_t cap = ex->reply_cap;
	char *p;

	while (cap < need && cap < REPLY_MAX)
		cap = cap * 2 < REPLY_MAX ? cap * 2 : REPLY_MAX;
	if (cap == ex->reply_cap)
		return 0;
	if ((p = malloc(cap)) == NULL)
		return -1;
	memcpy(p, ex->reply, ex->reply_len + 1);
	secmem_wipe(ex->reply, ex->reply_len);
	if (ex->reply != ex->inline_reply)
		free(ex->reply);
	ex->reply = p;
	ex->reply_cap = cap;
	return 0;
}

/* Bot API method names, as in the URL. */
static const char *const method_names[] = {
	[TG_SEND_MESSAGE] = "sendMessage",
	[TG_DELETE_MESSAGE] = "deleteMessage",
	[TG_DELETE_MESSAGES] = "deleteMessages",
};

static const char *const status_names[] = {
	[TG_OK] = "ok",
	[TG_NOT_FOUND] = "not_found",
	[TG_REFUSED] = "refused",
	[TG_RETRY_AFTER] = "retry_after",
	[TG_SERVER_ERROR] = "server_error",
	[TG_TIMEOUT] = "timeout",
	[TG_UNREACHABLE] = "unreachable",
	[TG_NO_ANSWER] = "no_answer",
	[TG_BAD_REPLY] = "bad_reply",
};

const char *tg_status_name(enum tg_status st)
{
	return status_names[st];
}

const char *tg_method_name(enum tg_method method)
{
	return method_names[method];
}

int tg_global_init(void)
{
	/* curl's own copies of the URL (the token), the body (the OTP) and the reply are wiped
	 * when it frees them */
	return curl_global_init_mem(CURL_GLOBAL_DEFAULT, secmem_malloc, secmem_free, secmem_realloc,
				    secmem_strdup, secmem_calloc) == CURLE_OK ? 0 : -1;
}

void tg_global_cleanup(void)
{
	curl_global_cleanup();
}

struct tg *tg_new(const char *api_base, const char *token, long timeout_ms)
{
	struct tg *tg = calloc(1, sizeof *tg);

	if (tg == NULL)
		return NULL;
	tg->timeout_ms = timeout_ms;
	tg->curl = curl_easy_init();
	tg->token = strdup(token);
	if (tg->curl == NULL || tg->token == NULL ||
	    asprintf(&tg->url_prefix, "%s/bot%s/", api_base, token) < 0) {
		tg->url_prefix = NULL;
		tg_free(tg);
		return NULL;
	}
	tg->headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* no "Expect: 100-continue" for bodies over 1 KiB: it would cost a round trip */
	if (tg->headers != NULL)
		tg->headers = curl_slist_append(tg->headers, "Expect:");
	if (tg->headers == NULL) {
		tg_free(tg);
		return NULL;
	}
	return tg;
}

void tg_set_paid_broadcast(struct tg *tg, int on)
{
	tg->paid_broadcast = on;
}

int tg_set_ca_file(struct tg *tg, const char *ca_file)
{
	char *copy = strdup(ca_file);

	if (copy == NULL)
		return -1;
	free(tg->ca_file);
	tg->ca_file = copy;
	return 0;
}

void tg_free(struct tg *tg)
{
	if (tg == NULL)
		return;
	free(tg->ca_file);
	if (tg->curl != NULL)
		curl_easy_cleanup(tg->curl);
	curl_slist_free_all(tg->headers);
	secmem_free_str(tg->url_prefix);
	secmem_free_str(tg->token);
	free(tg);
}

int tg_json_quote(char *buf, size_t cap, size_t *len, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = *len;

#define PUT(c)                      \
	do {                        \
		if (n + 1 >= cap)   \
			return -1;  \
		buf[n++] = (c);     \
	} while (0)
	PUT('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			PUT('\\');
			PUT((char)c);
		} else if (c == '\n') {
			PUT('\\');
			PUT('n');
		} else if (c < 0x20) {
			PUT('\\');
			PUT('u');
			PUT('0');
			PUT('0');
			PUT(hex[c >> 4]);
			PUT(hex[c & 15]);
		} else {
			PUT((char)c);
		}
	}
	PUT('"');
#undef PUT
	buf[n] = '\0';
	*len = n;
	return 0;
}

static int append(char *buf, size_t cap, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (*len + n >= cap)
		return -1;
	memcpy(buf + *len, s, n + 1);
	*len += n;
	return 0;
}

/* Appends formatted text at *len within cap. Returns 0, or -1 when it does not fit. */
static int appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= cap)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct exchange *ex = userdata;
	size_t n = size * nmemb;

	if (ex->reply_len + n >= ex->reply_cap && grow_reply(ex, ex->reply_len + n + 1) != 0)
		return 0; /* out of memory: curl fails the call */
	if (ex->reply_len + n >= ex->reply_cap) {
		ex->overflow = 1;
		n = ex->reply_cap - 1 - ex->reply_len;
	}
	memcpy(ex->reply + ex->reply_len, ptr, n);
	ex->reply_len += n;
	ex->reply[ex->reply_len] = '\0';
	return size * nmemb;
}

/* CURLOPT_READFUNCTION: the next piece of the body. */
static size_t give_body(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct exchange *ex = userdata;
	size_t n = ex->body_len - ex->body_given;

	if (n > size * nitems)
		n = size * nitems;
	memcpy(buf, ex->body + ex->body_given, n);
	ex->body_given += n;
	if (n > 0)
		ex->went_out = 1;
	return n;
}

/* CURLOPT_SEEKFUNCTION: curl rewinds the body to send the request again on a fresh connection
 * when a kept-alive one died after the request went out (libcurl 7.88, FACTS.md). The Bot API
 * may have acted on the first: for a send, refuse, and the call ends in an error
 * (TG_NO_ANSWER). A deletion is rewound: repeating it is harmless. */
static int refuse_rewind(void *userdata, curl_off_t offset, int origin)
{
	struct exchange *ex = userdata;

	if (offset != 0 || origin != SEEK_SET || (ex->at_most_once && ex->went_out))
		return CURL_SEEKFUNC_FAIL;
	ex->body_given = 0;
	return CURL_SEEKFUNC_OK;
}

/* CURLOPT_PREREQFUNCTION: called before each request curl begins for this call. A second
 * request after any of the body was handed out is the same repeat without a rewind (the case
 * where curl counted nothing as written): refuse it too for a send. A request that died before
 * taking any of the body may be repeated: the Bot API cannot have acted on it. A deletion may
 * always be repeated, from the start of its body. */
static int refuse_repeat(void *userdata, char *primary_ip, char *local_ip, int primary_port,
			 int local_port)
{
	struct exchange *ex = userdata;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (ex->at_most_once && ex->went_out)
		return CURL_PREREQFUNC_ABORT;
	ex->body_given = 0;
	return CURL_PREREQFUNC_OK;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t need, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		need = 2;
		cp = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		need = 3;
		cp = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		need = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (i = 1; i < need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return need;
}

/* Whether the code point encoded at s (k bytes, valid) is one a log line or a terminal would
 * act on: C0, DEL, C1, the line and paragraph separators, bidirectional embeddings, overrides
 * and isolates. */
static int is_control(const unsigned char *s, size_t k)
{
	if (k == 1)
		return s[0] < 0x20 || s[0] == 0x7F;
	if (k == 2)
		return s[0] == 0xC2 && s[1] >= 0x80 && s[1] <= 0x9F;
	if (k == 3 && s[0] == 0xE2 && s[1] == 0x80)
		return s[2] >= 0xA8 && s[2] <= 0xAE; /* U+2028..U+202E */
	if (k == 3 && s[0] == 0xE2 && s[1] == 0x81)
		return s[2] >= 0xA6 && s[2] <= 0xA9; /* U+2066..U+2069 */
	return 0;
}

#define CLEAN_SCAN_MAX 1024
#define SECRET_PIECE_MIN 4

/* Length of the longest run at s[0..n) (n > 0) that occurs in secret[0..m). */
static size_t secret_run(const char *s, size_t n, const char *secret, size_t m)
{
	const char *p = secret, *end = secret + m;
	size_t best = 0, k;

	/* only where secret holds s[0]: most bytes of a text are in no token */
	while (p < end && (p = memchr(p, s[0], (size_t)(end - p))) != NULL) {
		for (k = 1; k < n && p + k < end && s[k] == p[k]; k++)
			;
		if (k > best)
			best = k;
		p++;
	}
	return best;
}

void tg_clean_text(char *dst, size_t cap, const char *src, size_t len, const char *token)
{
	char plain[CLEAN_SCAN_MAX + 1], masked[CLEAN_SCAN_MAX + 1];
	const unsigned char *u = (const unsigned char *)src;
	const char *secret = NULL, *colon = token != NULL ? strrchr(token, ':') : NULL;
	size_t n = 0, m = 0, i, k, run, secret_len = 0, keep;
	int cut = len > CLEAN_SCAN_MAX;

	if (cap < 4)
		return;
	if (token != NULL && token[0] != '\0') {
		/* the bot's id before the ':' is public; what follows is the secret */
		secret = colon != NULL && colon[1] != '\0' ? colon + 1 : token;
		secret_len = strlen(secret);
	}
	/* characters: invalid bytes and controls replaced, never longer than the input */
	if (len > CLEAN_SCAN_MAX)
		len = CLEAN_SCAN_MAX;
	for (i = 0; i < len; i += k) {
		k = utf8_len(u + i, len - i);
		if (k == 0) {
			plain[n++] = '?';
			k = 1;
		} else if (is_control(u + i, k)) {
			plain[n++] = ' ';
		} else {
			memcpy(plain + n, u + i, k);
			n += k;
		}
	}
	/* the token's secret, whole or in pieces: "***" for a run of at least 4 bytes of it,
	 * starting and ending on character boundaries */
	for (i = 0; i < n; i += k) {
		run = 0;
		if (secret != NULL && ((unsigned char)plain[i] & 0xC0) != 0x80) {
			run = secret_run(plain + i, n - i, secret, secret_len);
			while (run > 0 && i + run < n && ((unsigned char)plain[i + run] & 0xC0) == 0x80)
				run--;
		}
		if (run >= SECRET_PIECE_MIN || (run > 0 && run == secret_len)) {
			if (m + 3 > CLEAN_SCAN_MAX)
				break;
			memcpy(masked + m, "***", 3);
			m += 3;
			k = run;
		} else {
			if (m + 1 > CLEAN_SCAN_MAX)
				break;
			masked[m++] = plain[i];
			k = 1;
		}
	}
	if (i < n)
		cut = 1;
	/* cut on a character boundary, within the caller's buffer and the description limit */
	keep = TG_DESCRIPTION_MAX < cap - 4 ? TG_DESCRIPTION_MAX : cap - 4;
	if (m > keep) {
		while (keep > 0 && ((unsigned char)masked[keep] & 0xC0) == 0x80)
			keep--;
		m = keep;
		cut = 1;
	}
	memcpy(dst, masked, m);
	if (cut) {
		memcpy(dst + m, "\xe2\x80\xa6", 3); /* … */
		m += 3;
	}
	dst[m] = '\0';
	secmem_wipe(plain, sizeof plain);
	secmem_wipe(masked, sizeof masked);
}

/* Copies curl's message into res->description, cleaned: curl's messages may quote the URL, and
 * the URL holds the token. */
static void describe_curl_error(const struct tg *tg, CURLcode rc, const char *errbuf,
				struct tg_result *res)
{
	const char *msg = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
	char text[CURL_ERROR_SIZE + 64];

	if (rc == CURLE_PEER_FAILED_VERIFICATION) {
		snprintf(text, sizeof text, "the Bot API's certificate is not trusted: %s", msg);
		msg = text;
	}
	tg_clean_text(res->description, sizeof res->description, msg, strlen(msg), tg->token);
}

/* Points a handle at one POST of ex->body to url. The handle keeps pointers to ex and errbuf. */
static void prepare(const struct tg *tg, CURL *easy, const char *url, struct exchange *ex,
		    char *errbuf)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ex->body_len);
	curl_easy_setopt(easy, CURLOPT_READFUNCTION, give_body);
	curl_easy_setopt(easy, CURLOPT_READDATA, ex);
	curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, refuse_rewind);
	curl_easy_setopt(easy, CURLOPT_SEEKDATA, ex);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, refuse_repeat);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, ex);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, tg->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, ex);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "otp-gateway/1.0");
	if (tg->ca_file != NULL)
		curl_easy_setopt(easy, CURLOPT_CAINFO, tg->ca_file);
	/* bodies and replies are a few KiB, and hundreds of handles are alive at once: curl's
	 * 16 KiB receive and 64 KiB upload buffers per handle (wiped whole when freed, so always
	 * resident) would cost more than the rest of a call */
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 4096L);
	curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L); /* curl's smallest */
}

/* Turns a finished transfer of method into res, then drops the handle's pointers to our
 * buffers. */
static void conclude(const struct tg *tg, enum tg_method method, CURL *easy, CURLcode rc,
		     struct exchange *ex, const char *errbuf, struct tg_result *res)
{
	double secs = 0;

	if (rc != CURLE_OK) {
		memset(res, 0, sizeof *res);
		/* once any of the body was handed to curl, the request may have taken effect */
		res->status = !ex->went_out			? TG_UNREACHABLE
			      : rc == CURLE_OPERATION_TIMEDOUT ? TG_TIMEOUT
							       : TG_NO_ANSWER;
		if (rc == CURLE_SEND_FAIL_REWIND || rc == CURLE_ABORTED_BY_CALLBACK)
			snprintf(res->description, sizeof res->description,
				 "the connection closed after the request went out; not repeated");
		else
			describe_curl_error(tg, rc, errbuf, res);
		/* the handshake failed before any of the request went out */
		res->untrusted_certificate = rc == CURLE_PEER_FAILED_VERIFICATION;
	} else if (ex->overflow) {
		memset(res, 0, sizeof *res);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res->http_status);
		res->status = TG_BAD_REPLY;
		snprintf(res->description, sizeof res->description, "reply larger than %d bytes",
			 REPLY_MAX);
	} else {
		long http_status = 0;

		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
		tg_parse_reply(method, http_status, ex->reply, ex->reply_len, tg->token, res);
	}
	res->method = method;
	if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs) == CURLE_OK)
		res->duration_s = secs;
	curl_easy_setopt(easy, CURLOPT_READDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_SEEKDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_URL, "");
	secmem_wipe(ex->reply, ex->reply_len); /* sendMessage's reply echoes the text */
	ex->reply_len = 0;
	ex->overflow = 0;
}

static enum tg_status call(struct tg *tg, enum tg_method method, const char *body,
			   struct tg_result *res)
{
	struct exchange *ex = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;

	memset(res, 0, sizeof *res);
	ex = exchange_new();
	if (ex == NULL || asprintf(&url, "%s%s", tg->url_prefix, method_names[method]) < 0) {
		url = NULL;
		res->status = TG_UNREACHABLE;
		res->method = method;
		snprintf(res->description, sizeof res->description, "out of memory");
		goto out;
	}
	ex->body = body;
	ex->body_len = strlen(body);
	ex->at_most_once = method == TG_SEND_MESSAGE;
	prepare(tg, tg->curl, url, ex, errbuf);
	conclude(tg, method, tg->curl, curl_easy_perform(tg->curl), ex, errbuf, res);
out:
	secmem_free_str(url);
	exchange_free(ex);
	secmem_wipe(errbuf, sizeof errbuf);
	return res->status;
}

/* Telegram's error_code, range-checked: an HTTP error status (400..599), else the reply's own
 * HTTP status when that is one, else 0. */
static int error_code_of(json_t *v, long http_status)
{
	if (json_is_integer(v) && json_integer_value(v) >= 400 && json_integer_value(v) <= 599)
		return (int)json_integer_value(v);
	if (http_status >= 400 && http_status <= 599)
		return (int)http_status;
	return 0;
}

/* parameters.retry_after in whole seconds, in [1, TG_RETRY_AFTER_MAX]: absent, zero, negative or
 * not a number means 1; fractions round up; anything larger saturates. */
static int retry_after_of(json_t *v)
{
	double d;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 1)
			return 1;
		return json_integer_value(v) > TG_RETRY_AFTER_MAX ? TG_RETRY_AFTER_MAX
								  : (int)json_integer_value(v);
	}
	if (json_is_real(v)) {
		d = json_real_value(v);
		if (!(d >= 1)) /* NaN too */
			return 1;
		if (d >= TG_RETRY_AFTER_MAX)
			return TG_RETRY_AFTER_MAX;
		return (int)d + ((double)(int)d < d); /* rounded up */
	}
	return 1;
}

/* A success: what it must carry for method. */
static void read_success(enum tg_method method, json_t *root, struct tg_result *res)
{
	json_t *result = json_object_get(root, "result"), *v;

	if (method != TG_SEND_MESSAGE) {
		/* deleteMessage(s) answer result true; false or anything else is not a deletion */
		if (json_is_true(result)) {
			res->status = TG_OK;
			return;
		}
		res->status = TG_BAD_REPLY;
		snprintf(res->description, sizeof res->description,
			 "Telegram answered ok without result true");
		return;
	}
	v = json_object_get(result, "message_id");
	if (json_is_integer(v) && json_integer_value(v) >= 1 &&
	    json_integer_value(v) <= TG_MESSAGE_ID_MAX) {
		res->status = TG_OK;
		res->message_id = json_integer_value(v);
		return;
	}
	/* it may have been delivered, but without its id it cannot be deleted: not a success */
	res->status = TG_BAD_REPLY;
	snprintf(res->description, sizeof res->description,
		 "Telegram answered ok without a valid message_id");
}

void tg_parse_reply(enum tg_method method, long http_status, const char *body, size_t len,
		    const char *token, struct tg_result *res)
{
	json_t *root = NULL, *ok, *v;
	json_error_t jerr;

	memset(res, 0, sizeof *res);
	res->http_status = http_status;
	/* duplicate keys would make two readers of one reply disagree: not the Bot API's JSON */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	secmem_wipe(&jerr, sizeof jerr); /* it may quote the reply, which echoes the OTP */
	ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok)) {
		/* a proxy's error page when 5xx; otherwise an answer we cannot read */
		res->status = http_status >= 500 && http_status <= 599 ? TG_SERVER_ERROR
								       : TG_BAD_REPLY;
		snprintf(res->description, sizeof res->description,
			 "unexpected reply from the Bot API (HTTP %ld)", http_status);
		goto out;
	}
	if (json_is_true(ok)) {
		read_success(method, root, res);
		goto out;
	}
	res->error_code = error_code_of(json_object_get(root, "error_code"), http_status);
	v = json_object_get(root, "description");
	if (json_is_string(v))
		tg_clean_text(res->description, sizeof res->description, json_string_value(v),
			      json_string_length(v), token);
	else
		snprintf(res->description, sizeof res->description, "no description");
	if (res->error_code == 429) {
		res->status = TG_RETRY_AFTER;
		res->retry_after_s =
			retry_after_of(json_object_get(json_object_get(root, "parameters"),
						       "retry_after"));
	} else if (res->error_code >= 500) {
		res->status = TG_SERVER_ERROR;
	} else if (res->error_code == 0) {
		res->status = TG_BAD_REPLY; /* a refusal without any status to go by */
	} else if (method != TG_SEND_MESSAGE && json_is_string(v) &&
		   strstr(json_string_value(v), "message to delete not found") != NULL) {
		/* read before cleaning, which could mask a word of it */
		res->status = TG_NOT_FOUND;
	} else {
		res->status = TG_REFUSED;
	}
out:
	json_decref(root);
}

enum tg_status tg_send_message(struct tg *tg, const char *chat_id, const char *html_text,
			       struct tg_result *res)
{
	char *body = malloc(REQUEST_MAX);
	size_t len = 0, written = REQUEST_MAX; /* to wipe: a failed append may leave bytes past len */
	enum tg_status st;

	if (body == NULL || append(body, REQUEST_MAX, &len, "{\"chat_id\":") != 0 ||
	    tg_json_quote(body, REQUEST_MAX, &len, chat_id) != 0 ||
	    append(body, REQUEST_MAX, &len, ",\"text\":") != 0 ||
	    tg_json_quote(body, REQUEST_MAX, &len, html_text) != 0 ||
	    append(body, REQUEST_MAX, &len, ",\"parse_mode\":\"HTML\",\"protect_content\":true") != 0 ||
	    (tg->paid_broadcast &&
	     append(body, REQUEST_MAX, &len, ",\"allow_paid_broadcast\":true") != 0) ||
	    append(body, REQUEST_MAX, &len, "}") != 0) {
		memset(res, 0, sizeof *res);
		res->status = TG_REFUSED;
		snprintf(res->description, sizeof res->description, "message too long");
		st = TG_REFUSED;
		goto out;
	}
	/* wipe only what was written: all 32 KiB, wiped every time, would stay resident in every
	 * thread that sends */
	written = len + 1;
	st = call(tg, TG_SEND_MESSAGE, body, res);
out:
	if (body != NULL)
		secmem_wipe(body, written);
	free(body);
	return st;
}

enum tg_status tg_delete_message(struct tg *tg, const char *chat_id, long long message_id,
				 struct tg_result *res)
{
	char body[256];
	size_t len = 0;

	if (append(body, sizeof body, &len, "{\"chat_id\":") != 0 ||
	    tg_json_quote(body, sizeof body, &len, chat_id) != 0 ||
	    appendf(body, sizeof body, &len, ",\"message_id\":%lld}", message_id) != 0) {
		memset(res, 0, sizeof *res);
		res->status = TG_REFUSED;
		snprintf(res->description, sizeof res->description, "chat id too long");
		return TG_REFUSED;
	}
	return call(tg, TG_DELETE_MESSAGE, body, res);
}

/* One queued or running call of a batch. */
struct xfer {
	struct xfer *next; /* in the queue */
	char *url;         /* secret: holds the token */
	char *body;
	enum tg_method method;
	void *tag;
	CURL *easy;        /* while running */
	struct exchange *ex;
	char errbuf[CURL_ERROR_SIZE];
	int started;
	struct tg_result res; /* once it is over */
};

struct tg_batch {
	struct tg *tg;
	CURLM *multi;
	int steady;               /* connections kept between calls */
	int max_parallel;         /* calls at once while a backlog waits */
	struct xfer *head, *tail; /* queued, not yet started, in order */
	struct xfer *over, *over_tail; /* finished or dropped, not yet read, in order */
	int running;
	int halted;               /* start nothing more, until the batch is idle */
	CURL **idle;              /* easy handles ready for reuse */
	int nidle, nhandles;
};

struct tg_batch *tg_batch_new(struct tg *tg, int steady, int max_parallel)
{
	struct tg_batch *b = calloc(1, sizeof *b);
	int i;

	if (b == NULL)
		return NULL;
	if (max_parallel < steady)
		max_parallel = steady;
	b->tg = tg;
	b->steady = steady;
	b->max_parallel = max_parallel;
	b->multi = curl_multi_init();
	b->idle = calloc((size_t)max_parallel, sizeof *b->idle);
	if (b->multi == NULL || b->idle == NULL)
		goto fail;
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_parallel);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_parallel);
	/* keep the steady pool's connections for reuse: by default the multi handle keeps 4 per
	 * attached call, so as a pass winds down it closes connections the next pass opens again
	 * (a TCP and TLS handshake each). Connections past the steady pool, opened for a backlog,
	 * are closed as their calls end: the cache never holds more than the steady pool. */
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)steady);
	for (i = 0; i < steady; i++) {
		b->idle[i] = curl_easy_init();
		if (b->idle[i] == NULL)
			goto fail;
		b->nidle++;
		b->nhandles++;
	}
	return b;
fail:
	tg_batch_free(b);
	return NULL;
}

static void xfer_free(struct xfer *x)
{
	secmem_free_str(x->url);
	free(x->body);
	exchange_free(x->ex);
	free(x);
}

static void free_list(struct xfer *x)
{
	struct xfer *next;

	for (; x != NULL; x = next) {
		next = x->next;
		xfer_free(x);
	}
}

/* Puts x, finished or dropped, at the end of the calls to be read back. */
static void push_over(struct tg_batch *b, struct xfer *x)
{
	x->next = NULL;
	if (b->over_tail != NULL)
		b->over_tail->next = x;
	else
		b->over = x;
	b->over_tail = x;
}

/* Moves every queued call (never started) to the calls to be read back. */
static void drop_queue(struct tg_batch *b)
{
	struct xfer *x;

	while ((x = b->head) != NULL) {
		b->head = x->next;
		push_over(b, x);
	}
	b->tail = NULL;
}

void tg_batch_free(struct tg_batch *b)
{
	int i;

	if (b == NULL)
		return;
	free_list(b->head);
	free_list(b->over);
	for (i = 0; i < b->nidle; i++)
		curl_easy_cleanup(b->idle[i]);
	free(b->idle);
	if (b->multi != NULL)
		curl_multi_cleanup(b->multi);
	free(b);
}

int tg_batch_add_delete(struct tg_batch *b, const char *chat_id, const long long *ids, int n,
			void *tag)
{
	char body[256 + 21 * TG_DELETE_MESSAGES_MAX];
	size_t len = 0;
	struct xfer *x;
	int i;

	if (n < 1 || n > TG_DELETE_MESSAGES_MAX)
		return -1;
	if (append(body, sizeof body, &len, "{\"chat_id\":") != 0 ||
	    tg_json_quote(body, sizeof body, &len, chat_id) != 0)
		return -1;
	if (n == 1) {
		if (appendf(body, sizeof body, &len, ",\"message_id\":%lld}", ids[0]) != 0)
			return -1;
	} else {
		if (appendf(body, sizeof body, &len, ",\"message_ids\":[") != 0)
			return -1;
		for (i = 0; i < n; i++)
			if (appendf(body, sizeof body, &len, "%s%lld", i > 0 ? "," : "", ids[i]) != 0)
				return -1;
		if (appendf(body, sizeof body, &len, "]}") != 0)
			return -1;
	}
	x = calloc(1, sizeof *x);
	if (x == NULL)
		return -1;
	x->tag = tag;
	x->method = n == 1 ? TG_DELETE_MESSAGE : TG_DELETE_MESSAGES;
	x->body = strdup(body);
	if (x->body == NULL ||
	    asprintf(&x->url, "%s%s", b->tg->url_prefix, method_names[x->method]) < 0) {
		x->url = NULL;
		xfer_free(x);
		return -1;
	}
	if (b->tail != NULL)
		b->tail->next = x;
	else
		b->head = x;
	b->tail = x;
	return 0;
}

/* Starts the first queued call on an idle handle. Returns 0, or -1 when it cannot start. */
static int start_next(struct tg_batch *b)
{
	struct xfer *x = b->head;

	if (x->ex == NULL && (x->ex = exchange_new()) == NULL)
		return -1;
	if (b->nidle == 0 && b->nhandles < b->max_parallel &&
	    (b->idle[b->nidle] = curl_easy_init()) != NULL) {
		b->nidle++;
		b->nhandles++;
	}
	if (b->nidle == 0)
		return -1;
	x->ex->body = x->body;
	x->ex->body_len = strlen(x->body);
	x->easy = b->idle[--b->nidle];
	prepare(b->tg, x->easy, x->url, x->ex, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(b->multi, x->easy) != CURLM_OK) {
		b->idle[b->nidle++] = x->easy;
		x->easy = NULL;
		return -1;
	}
	b->head = x->next;
	if (b->head == NULL)
		b->tail = NULL;
	x->started = 1;
	b->running++;
	return 0;
}

/* Moves every finished call to the calls to be read back. */
static void collect_finished(struct tg_batch *b)
{
	CURLMsg *m;
	int msgs;

	while ((m = curl_multi_info_read(b->multi, &msgs)) != NULL) {
		struct xfer *x = NULL;
		CURL *easy = m->easy_handle;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		conclude(b->tg, x->method, easy, m->data.result, x->ex, x->errbuf, &x->res);
		curl_multi_remove_handle(b->multi, easy);
		b->idle[b->nidle++] = easy;
		x->easy = NULL;
		b->running--;
		push_over(b, x);
	}
}

/* Ends a run of steps: the calls never started are dropped, and the handles a backlog added
 * to the steady pool are freed. */
static int go_idle(struct tg_batch *b)
{
	drop_queue(b);
	b->halted = 0;
	while (b->nhandles > b->steady && b->nidle > 0) {
		curl_easy_cleanup(b->idle[--b->nidle]);
		b->nhandles--;
	}
	return 0;
}

int tg_batch_step(struct tg_batch *b, int stop, int wait_ms)
{
	int still;

	/* every queued call starts, up to max_parallel: calls in flight grow with the backlog */
	while (!b->halted && !stop && b->head != NULL && b->running < b->max_parallel)
		if (start_next(b) != 0)
			break;
	if (b->running == 0) /* nothing runs, so nothing queued will start either */
		return go_idle(b);
	curl_multi_perform(b->multi, &still);
	collect_finished(b);
	if (b->running == 0 && (b->head == NULL || b->halted || stop))
		return go_idle(b);
	if (b->running > 0)
		curl_multi_poll(b->multi, NULL, 0, wait_ms, NULL);
	return 1;
}

int tg_batch_next_done(struct tg_batch *b, struct tg_done *out)
{
	struct xfer *x = b->over;

	if (x == NULL)
		return 0;
	b->over = x->next;
	if (b->over == NULL)
		b->over_tail = NULL;
	out->tag = x->tag;
	out->started = x->started;
	if (x->started)
		out->res = x->res;
	else
		memset(&out->res, 0, sizeof out->res);
	xfer_free(x);
	return 1;
}

void tg_batch_halt(struct tg_batch *b)
{
	b->halted = 1;
}
