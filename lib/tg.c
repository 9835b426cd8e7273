/* tg.c — the Bot API client. See tg.h. */
#define _GNU_SOURCE
#include "tg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "secmem.h"

#define REPLY_MAX (64 * 1024)
#define REQUEST_MAX 16384

struct tg {
	CURL *curl;
	char *url_prefix;   /* api_base + "/bot" + token + "/": secret */
	char *token;        /* to scrub from curl's messages */
	long timeout_ms;
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
};

const char *tg_status_name(enum tg_status st)
{
	return status_names[st];
}

int tg_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
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

static enum tg_status call(struct tg *tg, const char *method, const char *body,
			   struct tg_result *res)
{
	struct reply_buf *rb = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	CURLcode rc;

	memset(res, 0, sizeof *res);
	rb = calloc(1, sizeof *rb);
	if (rb == NULL || asprintf(&url, "%s%s", tg->url_prefix, method) < 0) {
		url = NULL;
		res->status = TG_UNREACHABLE;
		snprintf(res->description, sizeof res->description, "out of memory");
		goto out;
	}
	curl_easy_setopt(tg->curl, CURLOPT_URL, url);
	curl_easy_setopt(tg->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(tg->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(tg->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(tg->curl, CURLOPT_HTTPHEADER, tg->headers);
	curl_easy_setopt(tg->curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(tg->curl, CURLOPT_WRITEDATA, rb);
	curl_easy_setopt(tg->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(tg->curl, CURLOPT_TIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(tg->curl, CURLOPT_CONNECTTIMEOUT_MS, tg->timeout_ms);
	curl_easy_setopt(tg->curl, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
	curl_easy_setopt(tg->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(tg->curl, CURLOPT_USERAGENT, "otp-gateway/1.0");

	rc = curl_easy_perform(tg->curl);
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		res->status = TG_TIMEOUT;
		describe_curl_error(tg, rc, errbuf, res);
	} else if (rc != CURLE_OK) {
		res->status = TG_UNREACHABLE;
		describe_curl_error(tg, rc, errbuf, res);
	} else if (rb->overflow) {
		res->status = TG_SERVER_ERROR;
		snprintf(res->description, sizeof res->description, "reply larger than %d bytes",
			 REPLY_MAX);
	} else {
		curl_easy_getinfo(tg->curl, CURLINFO_RESPONSE_CODE, &res->http_status);
		tg_parse_reply(res->http_status, rb->data, rb->len, res);
	}
	/* the handle keeps pointers to our buffers: drop them before they go */
	curl_easy_setopt(tg->curl, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(tg->curl, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(tg->curl, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(tg->curl, CURLOPT_URL, "");
out:
	secmem_free_str(url);
	if (rb != NULL)
		secmem_wipe(rb->data, rb->len); /* sendMessage's reply echoes the text */
	free(rb);
	secmem_wipe(errbuf, sizeof errbuf);
	return res->status;
}

void tg_parse_reply(long http_status, const char *body, size_t len, struct tg_result *res)
{
	json_t *root = NULL, *ok, *v;
	json_error_t jerr;

	res->http_status = http_status;
	root = json_loadb(body, len, 0, &jerr);
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
	    append(body, REQUEST_MAX, &len,
		   ",\"parse_mode\":\"HTML\",\"protect_content\":true}") != 0) {
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
	    len + 40 >= sizeof body) {
		memset(res, 0, sizeof *res);
		res->status = TG_REFUSED;
		snprintf(res->description, sizeof res->description, "chat id too long");
		return TG_REFUSED;
	}
	snprintf(body + len, sizeof body - len, ",\"message_id\":%lld}", message_id);
	return call(tg, "deleteMessage", body, res);
}
