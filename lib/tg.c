/* tg.c — the Bot API client's transport: the client (address, token, CA, timeout), one call's
 * exchange over a curl easy handle, and the single calls. tg_batch.c runs exchanges many at a
 * time; tg_reply.c reads what comes back. See tg.h. */
#define _GNU_SOURCE
#include "tg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "secmem.h"
#include "tg_exchange.h"

#define REPLY_MAX (64 * 1024)
#define REPLY_INLINE 1024
/* the rendered text is at most ~3 KiB (MESSAGE_TEMPLATE's limit); JSON-escaped, 6 times that */
#define REQUEST_MAX 32768

struct tg {
	CURL *curl;         /* the single calls' handle: keeps its connection alive */
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
struct tg_exchange {
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

struct tg_exchange *tg_exchange_new(const char *body, enum tg_method method)
{
	struct tg_exchange *ex = calloc(1, sizeof *ex);

	if (ex != NULL) {
		ex->body = body;
		ex->body_len = strlen(body);
		ex->at_most_once = method == TG_SEND_MESSAGE;
		ex->reply = ex->inline_reply;
		ex->reply_cap = sizeof ex->inline_reply;
	}
	return ex;
}

void tg_exchange_free(struct tg_exchange *ex)
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
static int grow_reply(struct tg_exchange *ex, size_t need)
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

/* OpenSSL's allocator: secmem's, whose free wipes the block first. */
static void *ssl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return secmem_malloc(n);
}

static void *ssl_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return secmem_realloc(p, n);
}

static void ssl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	secmem_free(p);
}

int tg_global_init(void)
{
	CRYPTO_malloc_fn m;
	CRYPTO_realloc_fn r;
	CRYPTO_free_fn f;

	/* OpenSSL decrypts each record of a reply in its read buffer, so the buffer holds
	 * Telegram's echo of the text (the OTP); libcurl has it freed as soon as it is read
	 * (SSL_MODE_RELEASE_BUFFERS), and OpenSSL's own free does not wipe. Its allocator can only
	 * be replaced before its first allocation: hence this call's place in the programs */
	CRYPTO_get_mem_functions(&m, &r, &f);
	if (m != ssl_malloc && CRYPTO_set_mem_functions(ssl_malloc, ssl_realloc, ssl_free) != 1)
		return -1;
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

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct tg_exchange *ex = userdata;
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
	struct tg_exchange *ex = userdata;
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
	struct tg_exchange *ex = userdata;

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
	struct tg_exchange *ex = userdata;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (ex->at_most_once && ex->went_out)
		return CURL_PREREQFUNC_ABORT;
	ex->body_given = 0;
	return CURL_PREREQFUNC_OK;
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

void tg_exchange_prepare(const struct tg *tg, CURL *easy, const char *url,
			 struct tg_exchange *ex, char *errbuf)
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

void tg_exchange_conclude(const struct tg *tg, enum tg_method method, CURL *easy, CURLcode rc,
			  struct tg_exchange *ex, const char *errbuf, struct tg_result *res)
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

char *tg_method_url(const struct tg *tg, enum tg_method method)
{
	char *url;

	return asprintf(&url, "%s%s", tg->url_prefix, tg_method_name(method)) < 0 ? NULL : url;
}

/* One call on the client's own handle. body is not wiped here: the caller owns it. */
static enum tg_status call(struct tg *tg, enum tg_method method, const char *body,
			   struct tg_result *res)
{
	struct tg_exchange *ex = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;

	memset(res, 0, sizeof *res);
	ex = tg_exchange_new(body, method);
	if (ex == NULL || (url = tg_method_url(tg, method)) == NULL) {
		res->status = TG_UNREACHABLE;
		res->method = method;
		snprintf(res->description, sizeof res->description, "out of memory");
		goto out;
	}
	tg_exchange_prepare(tg, tg->curl, url, ex, errbuf);
	tg_exchange_conclude(tg, method, tg->curl, curl_easy_perform(tg->curl), ex, errbuf, res);
out:
	secmem_free_str(url);
	tg_exchange_free(ex);
	secmem_wipe(errbuf, sizeof errbuf);
	return res->status;
}

enum tg_status tg_send_message(struct tg *tg, const char *chat_id, const char *html_text,
			       struct tg_result *res)
{
	char *body = malloc(REQUEST_MAX);
	size_t len = 0, written = REQUEST_MAX; /* to wipe: a failed append may leave bytes past len */
	enum tg_status st;

	if (body == NULL ||
	    tg_request_send_message(body, REQUEST_MAX, &len, chat_id, html_text,
				    tg->paid_broadcast) != 0) {
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
	size_t len;

	if (tg_request_delete(body, sizeof body, &len, chat_id, &message_id, 1) != 0) {
		memset(res, 0, sizeof *res);
		res->status = TG_REFUSED;
		snprintf(res->description, sizeof res->description, "chat id too long");
		return TG_REFUSED;
	}
	return call(tg, TG_DELETE_MESSAGE, body, res);
}
