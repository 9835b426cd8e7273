/* fcgi_io.c — FastCGI request parsing and response writing. See fcgi_io.h. */
#include "fcgi_io.h"

#include "secmem.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int fcgi_io_listener_gone(void)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof sa;
	struct stat st;

	memset(&sa, 0, sizeof sa);
	if (getsockname(0, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] != '/')
		return 0;
	sa.sun_path[sizeof sa.sun_path - 1] = '\0';
	return stat(sa.sun_path, &st) != 0 && errno == ENOENT;
}

static const char *param(FCGX_Request *fr, const char *name)
{
	const char *v = FCGX_GetParam(name, fr->envp);

	return v != NULL ? v : "";
}

/* REQUEST_URI is the path the client asked for under every server we ship configs for (with
 * lighttpd's error handler too, where SCRIPT_NAME names the handler instead); the query string
 * is cut off here, into buf. */
static const char *request_path(FCGX_Request *fr, char *buf, size_t cap)
{
	const char *uri = param(fr, "REQUEST_URI");
	size_t n = strcspn(uri, "?");

	if (n == 0)
		return param(fr, "SCRIPT_NAME");
	if (n >= cap)
		n = cap - 1;
	memcpy(buf, uri, n);
	buf[n] = '\0';
	return buf;
}

void fcgi_io_parse_content_length(const char *v, struct request *req)
{
	char *end;
	long long n;

	req->content_length = -1;
	if (v == NULL || v[0] == '\0') /* absent, or "" as nginx sends on GET */
		return;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0) {
		req->content_length_bad = 1;
		return;
	}
	req->content_length = n;
}

/* Without CONTENT_LENGTH (Apache's mod_proxy_fcgi passes chunked bodies over ~16 KB that way)
 * the body is read to the end of the stream, up to one byte past HTTP_BODY_MAX. A longer body
 * is answered 413; the rest of it, up to BODY_DRAIN_MAX more bytes, is read and dropped so that
 * the web server, still writing it, gets our answer instead of a broken connection. Past that
 * the answer goes out anyway: the cost of a huge body stays bounded. */
#define BODY_DRAIN_MAX (256 * 1024)

static void read_to_eof(FCGX_Request *fr, struct request_buf *buf, struct request *req)
{
	char scratch[4096];
	size_t drained = 0;
	int got;

	got = FCGX_GetStr(buf->body, HTTP_BODY_MAX + 1, fr->in);
	req->body_len = got > 0 ? (size_t)got : 0;
	if (req->body_len > HTTP_BODY_MAX) {
		req->body_too_large = 1;
		req->body_len = HTTP_BODY_MAX;
		while (drained < BODY_DRAIN_MAX &&
		       (got = FCGX_GetStr(scratch, sizeof scratch, fr->in)) > 0)
			drained += (size_t)got;
		secmem_wipe(scratch, sizeof scratch); /* the dropped bytes may hold an OTP */
	}
	buf->body[req->body_len] = '\0';
}

void fcgi_io_read_request(FCGX_Request *fr, struct request_buf *buf, struct request *req)
{
	static __thread char path[1024];
	int want, got;

	memset(req, 0, sizeof *req);
	req->method = param(fr, "REQUEST_METHOD");
	req->path = request_path(fr, path, sizeof path);
	req->content_type = param(fr, "CONTENT_TYPE");
	req->remote_addr = param(fr, "REMOTE_ADDR");
	req->api_key = param(fr, "HTTP_X_API_KEY");
	if (req->api_key[0] == '\0' && strncmp(param(fr, "HTTP_AUTHORIZATION"), "Bearer ", 7) == 0)
		req->api_key = param(fr, "HTTP_AUTHORIZATION") + 7;
	req->redirect_status = (int)strtol(param(fr, "REDIRECT_STATUS"), NULL, 10);
	fcgi_io_parse_content_length(FCGX_GetParam("CONTENT_LENGTH", fr->envp), req);
	req->body = buf->body;
	buf->body[0] = '\0';
	if (req->content_length < 0 && !req->content_length_bad) {
		read_to_eof(fr, buf, req);
		return;
	}
	if (req->content_length <= 0 || req->content_length > HTTP_BODY_MAX)
		return;
	want = (int)req->content_length;
	got = FCGX_GetStr(buf->body, want, fr->in);
	if (got < want)
		req->body_short = 1;
	req->body_len = got > 0 ? (size_t)got : 0;
	buf->body[req->body_len] = '\0';
}

void fcgi_io_write_response(FCGX_Request *fr, const struct response *resp)
{
	char *body = NULL;

	if (resp->text != NULL) {
		FCGX_FPrintF(fr->out, "Status: %d %s\r\nContent-Type: %s\r\n\r\n", resp->status,
			     http_reason(resp->status), resp->content_type);
		FCGX_PutStr(resp->text, (int)strlen(resp->text), fr->out);
		return;
	}
	if (resp->body != NULL)
		body = json_dumps(resp->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	FCGX_FPrintF(fr->out, "Status: %d %s\r\nContent-Type: application/json\r\n", resp->status,
		     http_reason(resp->status));
	if (resp->allow != NULL)
		FCGX_FPrintF(fr->out, "Allow: %s\r\n", resp->allow);
	if (resp->www_authenticate != NULL)
		FCGX_FPrintF(fr->out, "WWW-Authenticate: %s\r\n", resp->www_authenticate);
	if (resp->retry_after_s > 0)
		FCGX_FPrintF(fr->out, "Retry-After: %ld\r\n", resp->retry_after_s);
	FCGX_FPrintF(fr->out, "Cache-Control: no-store\r\n\r\n%s",
		     body != NULL ? body : "{\"detail\":\"Internal Server Error\"}");
	secmem_json_free(body);
}
