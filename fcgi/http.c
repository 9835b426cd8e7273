/* http.c — response helpers. See http.h. */
#include "http.h"

#include <stdlib.h>
#include <string.h>

void http_respond(struct response *resp, int status, json_t *body)
{
	json_decref(resp->body);
	resp->status = status;
	resp->body = body;
}

void http_respond_detail(struct response *resp, int status, const char *detail)
{
	http_respond(resp, status, json_pack("{s:s}", "detail", detail));
}

void http_respond_failure(struct response *resp, int status, const char *detail)
{
	http_respond(resp, status, json_pack("{s:b, s:s}", "success", 0, "detail", detail));
}

void http_respond_text(struct response *resp, int status, const char *content_type, char *text)
{
	http_response_clear(resp);
	resp->status = status;
	resp->content_type = content_type;
	resp->text = text;
}

void http_response_clear(struct response *resp)
{
	json_decref(resp->body);
	resp->body = NULL;
	free(resp->text);
	resp->text = NULL;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}
