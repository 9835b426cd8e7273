/* http.h — the request a handler reads and the response it fills, free of FastCGI, so that
 * handlers can be called from unit tests and fuzzers without a web server. */
#ifndef OTP_HTTP_H
#define OTP_HTTP_H

#include <stddef.h>

#include <jansson.h>

#include "apikeys.h"

/* The responder's own body limit (the web servers' caps are set higher, so that this one answers, in JSON). */
#define HTTP_BODY_MAX 4096

struct request {
	const char *method;        /* "GET", "POST", … */
	const char *path;          /* without the query string */
	const char *content_type;  /* NULL or "" when absent */
	const char *remote_addr;   /* the client's address, "" when unknown */
	const char *api_key;       /* X-API-Key, or the token of "Authorization: Bearer", or "" */
	struct apikey_match caller; /* the key that matched (router_dispatch fills it); name and
				     * owner "" when no key is configured */
	long long content_length;  /* -1 when absent or empty (the body is then read to its end) */
	int content_length_bad;    /* CONTENT_LENGTH present but not a number */
	int redirect_status;       /* the web server's error status when it hands us its error page */
	const char *body;          /* read only when content_length <= HTTP_BODY_MAX */
	size_t body_len;
	int body_short;            /* the stream ended before content_length bytes */
	int body_too_large;        /* no content_length, and the stream held over HTTP_BODY_MAX */
	int body_timed_out;        /* the body had not all arrived within the bound read_body got */
	/* Reads the body into body and body_len (setting the body_* flags), waiting at most
	 * timeout_ms for it: the router calls it once the API key is checked, so that nobody
	 * without a key holds a thread while a body trickles in. NULL when body is already
	 * there (unit tests, fuzzers). conn is its own. */
	void (*read_body)(struct request *req, int timeout_ms);
	void *conn;
};

struct response {
	int status;
	json_t *body;              /* owned; serialised compactly */
	char *text;                /* owned; a non-JSON body (with content_type), when body is NULL */
	const char *content_type;  /* for text; JSON otherwise */
	const char *allow;         /* Allow header for 405 */
	const char *www_authenticate; /* WWW-Authenticate header for 401 */
	long retry_after_s;        /* Retry-After header when > 0 */
	char chat_id_masked[40];   /* for the access log, when the request named a chat */
};

/* Sets status and body (taking ownership of body). */
void http_respond(struct response *resp, int status, json_t *body);

/* Sets status and a body {"detail": "<detail>"} (FastAPI's shape for plain errors). */
void http_respond_detail(struct response *resp, int status, const char *detail);

/* Sets status and a body {"success": false, "detail": "<detail>"} (the send errors' shape). */
void http_respond_failure(struct response *resp, int status, const char *detail);

/* The reason phrase for a status ("Unprocessable Entity"). */
const char *http_reason(int status);

/* Sets status and a non-JSON body (taking ownership of text, a malloc'd string). */
void http_respond_text(struct response *resp, int status, const char *content_type, char *text);

/* Frees the body. */
void http_response_clear(struct response *resp);

#endif
