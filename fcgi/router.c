/* router.c — the route table and the checks every route shares. See router.h. */
#include "router.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "apikeys.h"
#include "clock.h"
#include "secmem.h"

#define UNAUTHORIZED_DETAIL \
	"Missing or invalid API key: send it in the X-API-Key header or as Authorization: Bearer <key>"

struct route {
	const char *path;
	const char *method;
	int takes_json;      /* a JSON body: length and content type are checked before the handler */
	int needs_key;       /* API_KEY, when configured, is required */
	handler_fn handler;
};

static const struct route routes[] = {
	{ "/", "GET", 0, 0, api_root },
	{ "/send-otp", "POST", 1, 1, api_send_otp },
	{ "/revoke-otp", "POST", 1, 1, api_revoke_otp },
	{ "/health", "GET", 0, 0, api_health },
	{ "/metrics", "GET", 0, 0, api_metrics },
};

#define NROUTES (sizeof routes / sizeof routes[0])

/* application/json or application/<anything>+json, with optional parameters */
static int is_json_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return 1;
	return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* The web server hands us its own errors (lighttpd's server.error-handler), so that every
 * error a client sees is JSON. */
static void answer_server_error(const struct request *req, struct response *resp)
{
	char detail[96];

	switch (req->redirect_status) {
	case 404:
		http_respond_detail(resp, 404, "Not Found");
		break;
	case 413:
		snprintf(detail, sizeof detail, "Request body larger than %d bytes", HTTP_BODY_MAX);
		http_respond_detail(resp, 413, detail);
		break;
	default:
		http_respond_detail(resp, req->redirect_status, http_reason(req->redirect_status));
		break;
	}
}

const char *router_metric_path(const char *path)
{
	size_t i;

	for (i = 0; i < NROUTES; i++)
		if (strcmp(routes[i].path, path) == 0)
			return routes[i].path;
	return "other";
}

void router_dispatch(struct worker *w, struct request *req, struct response *resp)
{
	const struct route *r = NULL;
	char detail[96];
	size_t i;

	if (req->redirect_status >= 400) {
		answer_server_error(req, resp);
		return;
	}
	for (i = 0; i < NROUTES; i++) {
		if (strcmp(routes[i].path, req->path) == 0) {
			r = &routes[i];
			break;
		}
	}
	if (r == NULL) {
		http_respond_detail(resp, 404, "Not Found");
		return;
	}
	if (strcmp(r->method, req->method) != 0) {
		resp->allow = r->method;
		http_respond_detail(resp, 405, "Method Not Allowed");
		return;
	}
	if (r->needs_key && apikeys_enabled(w->app->keys) &&
	    !apikeys_check(w->app->keys, req->api_key != NULL ? req->api_key : "", clock_mono_ms(),
			   &req->caller)) {
		resp->www_authenticate = "Bearer realm=\"otp-gateway\"";
		http_respond_detail(resp, 401, UNAUTHORIZED_DETAIL);
		return;
	}
	if (r->takes_json) {
		if (req->read_body != NULL && req->content_length <= HTTP_BODY_MAX &&
		    !req->content_length_bad)
			req->read_body(req, w->app->cfg->body_timeout_ms);
		if (req->body_timed_out) {
			snprintf(detail, sizeof detail, "Request body not received within %d seconds",
				 w->app->cfg->body_timeout_ms / 1000);
			http_respond_detail(resp, 408, detail);
			return;
		}
		if (req->content_length > HTTP_BODY_MAX || req->body_too_large) {
			snprintf(detail, sizeof detail, "Request body larger than %d bytes",
				 HTTP_BODY_MAX);
			http_respond_detail(resp, 413, detail);
			return;
		}
		if (!is_json_type(req->content_type)) {
			http_respond_detail(resp, 415, "Content-Type must be application/json");
			return;
		}
		if (req->content_length_bad || req->body_short) {
			http_respond_detail(resp, 400, "Request body does not match Content-Length");
			return;
		}
	}
	r->handler(w, req, resp);
	/* the handler's calls (the OTP parsed, rendered, sent and echoed back by Telegram) left
	 * copies in their frames, below this one */
	secmem_wipe_stack();
}
