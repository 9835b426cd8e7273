/* tg.c — the Bot API client. See tg.h. */
#define _GNU_SOURCE
#include "tg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "metrics.h"
#include "secmem.h"

#define REPLY_MAX (64 * 1024)
/* the rendered text is at most ~3 KiB (MESSAGE_TEMPLATE's limit); JSON-escaped, 6 times that */
#define REQUEST_MAX 32768

struct tg {
	CURL *curl;
	char *url_prefix;   /* api_base + "/bot" + token + "/": secret */
	char *token;        /* to scrub from curl's messages */
	long timeout_ms;
	int paid_broadcast;   /* sendMessage with allow_paid_broadcast */
	struct curl_slist *headers;
};

struct reply_buf {
	char data[REPLY_MAX];
	size_t len;
	int overflow;
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
};

const char *tg_status_name(enum tg_status st)
{
	return status_names[st];
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

void tg_free(struct tg *tg)
{
	if (tg == NULL)
		return;
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
	struct reply_buf *rb = userdata;
	size_t n = size * nmemb;

	if (rb->len + n >= sizeof rb->data) {
		rb->overflow = 1;
		n = sizeof rb->data - 1 - rb->len;
	}
	memcpy(rb->data + rb->len, ptr, n);
	rb->len += n;
	rb->data[rb->len] = '\0';
	return size * nmemb;
}

/* Copies curl's message into res->description with every occurrence of the token cut out:
 * curl's messages may quote the URL, and the URL holds the token. */
static void describe_curl_error(const struct tg *tg, CURLcode rc, const char *errbuf,
				struct tg_result *res)
{
	char msg[CURL_ERROR_SIZE + 64];
	char *hit;
	size_t toklen = strlen(tg->token);

	snprintf(msg, sizeof msg, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
	while (toklen > 0 && (hit = strstr(msg, tg->token)) != NULL) {
		memmove(hit + 3, hit + toklen, strlen(hit + toklen) + 1);
		memcpy(hit, "***", 3);
	}
	snprintf(res->description, sizeof res->description, "%.250s", msg);
	secmem_wipe(msg, sizeof msg);
}

/* Points a handle at one POST of body to method. The handle keeps pointers to rb and errbuf. */
static void prepare(const struct tg *tg, CURL *easy, const char *url, const char *body,
		    struct reply_buf *rb, char *errbuf)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, tg->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, rb);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "otp-gateway/1.0");
}

/* telegram_api_duration_seconds{method}: the method is the URL's last path segment. */
static void observe_duration(CURL *easy)
{
	char labels[64];
	const char *url = NULL, *method;
	double secs = 0;

	if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || url == NULL)
		return;
	method = strrchr(url, '/');
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs);
	snprintf(labels, sizeof labels, "method=\"%.40s\"", method != NULL ? method + 1 : "?");
	metrics_observe("telegram_api_duration_seconds", labels, secs);
}

/* Turns a finished transfer into res, then drops the handle's pointers to our buffers. */
static void conclude(const struct tg *tg, CURL *easy, CURLcode rc, struct reply_buf *rb,
		     const char *errbuf, struct tg_result *res)
{
	long sent = 0;

	observe_duration(easy);
	if (rc != CURLE_OK) {
		/* whether any of the request went out decides whether it may have taken effect */
		curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
		res->status = sent == 0			     ? TG_UNREACHABLE
			      : rc == CURLE_OPERATION_TIMEDOUT ? TG_TIMEOUT
							       : TG_NO_ANSWER;
		describe_curl_error(tg, rc, errbuf, res);
	} else if (rb->overflow) {
		res->status = TG_SERVER_ERROR;
		snprintf(res->description, sizeof res->description, "reply larger than %d bytes",
			 REPLY_MAX);
	} else {
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res->http_status);
		tg_parse_reply(res->http_status, rb->data, rb->len, res);
	}
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_URL, "");
	secmem_wipe(rb->data, rb->len); /* sendMessage's reply echoes the text */
	rb->len = 0;
	rb->overflow = 0;
}

static enum tg_status call(struct tg *tg, const char *method, const char *body,
			   struct tg_result *res)
{
	struct reply_buf *rb = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;

	memset(res, 0, sizeof *res);
	rb = calloc(1, sizeof *rb);
	if (rb == NULL || asprintf(&url, "%s%s", tg->url_prefix, method) < 0) {
		url = NULL;
		res->status = TG_UNREACHABLE;
		snprintf(res->description, sizeof res->description, "out of memory");
		goto out;
	}
	prepare(tg, tg->curl, url, body, rb, errbuf);
	conclude(tg, tg->curl, curl_easy_perform(tg->curl), rb, errbuf, res);
out:
	secmem_free_str(url);
	free(rb);
	secmem_wipe(errbuf, sizeof errbuf);
	return res->status;
}

/* A long description cut to fit may end inside a UTF-8 sequence: drop that partial character,
 * or the JSON built from it would be refused. */
static void trim_partial_utf8(char *s)
{
	size_t n = strlen(s), i = n, need;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--; /* continuation bytes */
	if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
		return;
	need = ((unsigned char)s[i - 1] & 0xE0) == 0xC0 ? 2 : ((unsigned char)s[i - 1] & 0xF0) == 0xE0 ? 3 : 4;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

void tg_parse_reply(long http_status, const char *body, size_t len, struct tg_result *res)
{
	json_t *root = NULL, *ok, *v;
	json_error_t jerr;

	res->http_status = http_status;
	root = json_loadb(body, len, 0, &jerr);
	secmem_wipe(&jerr, sizeof jerr); /* it may quote the reply, which echoes the OTP */
	ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok)) {
		res->status = TG_SERVER_ERROR;
		snprintf(res->description, sizeof res->description,
			 "unexpected reply from the Bot API (HTTP %ld)", http_status);
		goto out;
	}
	if (json_is_true(ok)) {
		res->status = TG_OK;
		v = json_object_get(json_object_get(root, "result"), "message_id");
		if (json_is_integer(v))
			res->message_id = json_integer_value(v);
		goto out;
	}
	v = json_object_get(root, "error_code");
	res->error_code = json_is_integer(v) ? (int)json_integer_value(v) : (int)http_status;
	v = json_object_get(root, "description");
	snprintf(res->description, sizeof res->description, "%s",
		 json_is_string(v) ? json_string_value(v) : "no description");
	trim_partial_utf8(res->description);
	if (res->error_code == 429) {
		v = json_object_get(json_object_get(root, "parameters"), "retry_after");
		res->status = TG_RETRY_AFTER;
		res->retry_after_s = json_is_integer(v) && json_integer_value(v) > 0
					     ? (int)json_integer_value(v) : 1;
	} else if (res->error_code >= 500) {
		res->status = TG_SERVER_ERROR;
	} else if (strstr(res->description, "message to delete not found") != NULL) {
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
	size_t len = 0;
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
	st = call(tg, "sendMessage", body, res);
out:
	if (body != NULL)
		secmem_wipe(body, REQUEST_MAX);
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
	return call(tg, "deleteMessage", body, res);
}

/* One queued or running call of a batch. */
struct xfer {
	struct xfer *next; /* in the queue */
	char *url;         /* secret: holds the token */
	char *body;
	void *tag;
	CURL *easy;        /* while running */
	struct reply_buf *rb;
	char errbuf[CURL_ERROR_SIZE];
};

struct tg_batch {
	struct tg *tg;
	CURLM *multi;
	int max_parallel;
	struct xfer *head, *tail; /* queued, not yet started, in order */
	int running;
	CURL **idle;              /* easy handles ready for reuse */
	int nidle;
};

struct tg_batch *tg_batch_new(struct tg *tg, int max_parallel)
{
	struct tg_batch *b = calloc(1, sizeof *b);
	int i;

	if (b == NULL)
		return NULL;
	b->tg = tg;
	b->max_parallel = max_parallel;
	b->multi = curl_multi_init();
	b->idle = calloc((size_t)max_parallel, sizeof *b->idle);
	if (b->multi == NULL || b->idle == NULL)
		goto fail;
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_parallel);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_parallel);
	for (i = 0; i < max_parallel; i++) {
		b->idle[i] = curl_easy_init();
		if (b->idle[i] == NULL)
			goto fail;
		b->nidle++;
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
	free(x->rb);
	free(x);
}

/* Drops every queued call (they were never started), telling done() when one is given. */
static void drop_queue(struct tg_batch *b, tg_batch_done_fn done, void *ctx)
{
	struct xfer *x;

	while ((x = b->head) != NULL) {
		b->head = x->next;
		if (done != NULL)
			done(ctx, x->tag, NULL);
		xfer_free(x);
	}
	b->tail = NULL;
}

void tg_batch_free(struct tg_batch *b)
{
	int i;

	if (b == NULL)
		return;
	drop_queue(b, NULL, NULL);
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
	x->body = strdup(body);
	if (x->body == NULL || asprintf(&x->url, "%s%s", b->tg->url_prefix,
					n == 1 ? "deleteMessage" : "deleteMessages") < 0) {
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

	if (x->rb == NULL && (x->rb = calloc(1, sizeof *x->rb)) == NULL)
		return -1;
	if (b->nidle == 0)
		return -1;
	x->easy = b->idle[--b->nidle];
	prepare(b->tg, x->easy, x->url, x->body, x->rb, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(b->multi, x->easy) != CURLM_OK) {
		b->idle[b->nidle++] = x->easy;
		x->easy = NULL;
		return -1;
	}
	b->head = x->next;
	if (b->head == NULL)
		b->tail = NULL;
	b->running++;
	return 0;
}

/* Reports every finished call. Returns nonzero when done() asked to start nothing more. */
static int reap_finished(struct tg_batch *b, tg_batch_done_fn done, void *ctx)
{
	struct tg_result res;
	CURLMsg *m;
	int msgs, halt = 0;

	while ((m = curl_multi_info_read(b->multi, &msgs)) != NULL) {
		struct xfer *x = NULL;
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		memset(&res, 0, sizeof res);
		conclude(b->tg, easy, rc, x->rb, x->errbuf, &res);
		curl_multi_remove_handle(b->multi, easy);
		b->idle[b->nidle++] = easy;
		b->running--;
		if (done(ctx, x->tag, &res) != 0)
			halt = 1;
		xfer_free(x);
	}
	return halt;
}

int tg_batch_run(struct tg_batch *b, tg_batch_done_fn done, tg_batch_tick_fn tick, void *ctx,
		 const volatile sig_atomic_t *stop)
{
	int reported = 0, halt = 0, still;

	for (;;) {
		while (!halt && !*stop && b->head != NULL && b->running < b->max_parallel)
			if (start_next(b) != 0)
				break;
		if (b->running == 0)
			break;
		curl_multi_perform(b->multi, &still);
		still = b->running;
		if (reap_finished(b, done, ctx) != 0)
			halt = 1;
		reported += still - b->running;
		if (tick != NULL)
			tick(ctx); /* may queue more calls */
		if (b->running > 0)
			curl_multi_poll(b->multi, NULL, 0, 50, NULL);
	}
	drop_queue(b, done, ctx);
	return reported;
}
