/* fcgi_io.c — FastCGI request parsing and response writing. See fcgi_io.h. */
#include "fcgi_io.h"

#include "clock.h"
#include "log.h"
#include "secmem.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

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

/* The leading fields of libfcgi's private stream state (fcgiapp.c's FCGX_Stream_Data, as in
 * libfcgi 2.4.2): where the stream reads the connection into. Used only after
 * checking that the public pointers lie inside it. */
struct libfcgi_stream_data {
	unsigned char *buff;     /* reads from the connection land here */
	int bufflen;
	unsigned char *mBuff;    /* buff before alignment to 8 */
	unsigned char *buffStop; /* end of what the last read brought */
};

static int within(const unsigned char *p, const unsigned char *lo, const unsigned char *hi)
{
	return p >= lo && p <= hi;
}

/* The buffer libfcgi reads fr's stdin into, or NULL when the stream does not look like
 * libfcgi's layout (then it is left alone). */
static struct libfcgi_stream_data *stdin_buffer(FCGX_Request *fr)
{
	FCGX_Stream *in = fr->in;
	struct libfcgi_stream_data *d;
	unsigned char *end;

	if (in == NULL || !in->isReader || in->data == NULL)
		return NULL;
	d = in->data;
	if (d->buff == NULL || d->mBuff == NULL || d->bufflen < 32 || d->bufflen > 65536 + 8 ||
	    d->buff < d->mBuff || d->buff - d->mBuff >= 8)
		return NULL;
	end = d->buff + d->bufflen;
	if (!within(in->rdNext, d->buff, end) || !within(in->stop, d->buff, end) ||
	    !within(in->stopUnget, d->buff, end) || !within(d->buffStop, d->buff, end))
		return NULL;
	return d;
}

void fcgi_io_wipe_input(FCGX_Request *fr)
{
	static atomic_int warned;
	struct libfcgi_stream_data *d;

	if (fr->in == NULL)
		return;
	d = stdin_buffer(fr);
	if (d == NULL) {
		if (atomic_exchange(&warned, 1) == 0)
			log_msg(LOG_WARNING, "libfcgi's input stream is not laid out as expected: "
					     "request bodies stay in its buffer until it is reused");
		return;
	}
	secmem_wipe(d->buff, (size_t)d->bufflen);
	/* nothing is left to read: the stream ends here, on zeros nobody reads */
	fr->in->rdNext = fr->in->stop = fr->in->stopUnget = fr->in->wrNext = d->buff;
	d->buffStop = d->buff;
}

/* Sets how long one read of the connection may wait: 0 ms is no limit. */
static int set_read_timeout(int fd, int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Reads up to n bytes of stdin into dst, waiting for the web server no later than deadline_ms
 * (clock_mono_ms()). libfcgi's reads block, so each read of the connection (made only when its
 * buffer holds nothing more) gets the time left as its receive timeout, and at most one byte is
 * asked for then: a body trickling in cannot keep one call going past the deadline. Returns the
 * count; sets *timed_out when the deadline ended it before n bytes or the end of the body. */
static int get_bounded(FCGX_Request *fr, char *dst, int n, int64_t deadline_ms, int *timed_out)
{
	FCGX_Stream *in = fr->in;
	int got = 0, m, err;
	int64_t left;

	while (got < n) {
		if (in->rdNext < in->stop) { /* buffered: no wait */
			m = (int)(in->stop - in->rdNext);
			m = FCGX_GetStr(dst + got, m < n - got ? m : n - got, in);
		} else {
			left = deadline_ms - clock_mono_ms();
			if (left <= 0) {
				*timed_out = 1;
				break;
			}
			if (set_read_timeout(fr->ipcFd, left) != 0)
				break;
			m = FCGX_GetStr(dst + got, 1, in);
			err = FCGX_GetError(in);
			if (m <= 0 && (err == EAGAIN || err == EWOULDBLOCK))
				*timed_out = 1;
		}
		if (m <= 0)
			break;
		got += m;
	}
	return got;
}

/* Without CONTENT_LENGTH (Apache's mod_proxy_fcgi passes chunked bodies over ~16 KB that way)
 * the body is read to the end of the stream, up to one byte past HTTP_BODY_MAX. A longer body
 * is answered 413; the rest of it, up to BODY_DRAIN_MAX more bytes, is read and dropped so that
 * the web server, still writing it, gets our answer instead of a broken connection. Past that
 * the answer goes out anyway: the cost of a huge body stays bounded. */
#define BODY_DRAIN_MAX (256 * 1024)

static void read_to_eof(FCGX_Request *fr, struct request_buf *buf, struct request *req,
			int64_t deadline_ms)
{
	char scratch[4096];
	size_t drained = 0;
	int got, late = 0;

	got = get_bounded(fr, buf->body, HTTP_BODY_MAX + 1, deadline_ms, &req->body_timed_out);
	req->body_len = got > 0 ? (size_t)got : 0;
	if (req->body_len > HTTP_BODY_MAX) {
		req->body_too_large = 1;
		req->body_len = HTTP_BODY_MAX;
		while (drained < BODY_DRAIN_MAX &&
		       (got = get_bounded(fr, scratch, sizeof scratch, deadline_ms, &late)) > 0)
			drained += (size_t)got;
		secmem_wipe(scratch, sizeof scratch); /* the dropped bytes may hold an OTP */
	}
	buf->body[req->body_len] = '\0';
}

/* request.read_body for a FastCGI request: see http.h. */
static void read_body(struct request *req, int timeout_ms)
{
	struct fcgi_io_conn *c = req->conn;
	int64_t deadline = clock_mono_ms() + timeout_ms;
	int want, got;

	req->read_body = NULL; /* once */
	if (req->content_length < 0) {
		read_to_eof(c->fr, c->buf, req, deadline);
	} else if (req->content_length > 0 && req->content_length <= HTTP_BODY_MAX) {
		want = (int)req->content_length;
		got = get_bounded(c->fr, c->buf->body, want, deadline, &req->body_timed_out);
		if (got < want)
			req->body_short = 1;
		req->body_len = got > 0 ? (size_t)got : 0;
		c->buf->body[req->body_len] = '\0';
	}
	/* the connection may carry the next request (keep-alive): its reads wait as before */
	set_read_timeout(c->fr->ipcFd, 0);
}

/* How long a closing connection is read and dropped from, at most, after the answer: long
 * enough for the web server to take the answer and close its side. */
#define LINGER_MAX_MS 2000

/* Drops what the web server still sends until it closes its side or LINGER_MAX_MS pass, so
 * that the connection closes with a FIN, not a reset that could discard the answer. */
static void linger(int fd)
{
	int64_t deadline = clock_mono_ms() + LINGER_MAX_MS, left;
	struct pollfd pfd = { fd, POLLIN, 0 };
	char trash[1024];

	if (shutdown(fd, SHUT_WR) != 0)
		return;
	while ((left = deadline - clock_mono_ms()) > 0 && poll(&pfd, 1, (int)left) > 0 &&
	       read(fd, trash, sizeof trash) > 0)
		;
	secmem_wipe(trash, sizeof trash); /* the rest of a body: an OTP perhaps */
}

void fcgi_io_finish(FCGX_Request *fr)
{
	int closing;

	if (fr->in != NULL && fr->ipcFd >= 0) {
		closing = !fr->keepConnection || FCGX_GetError(fr->in) != 0;
		closing |= FCGX_FClose(fr->err) != 0;
		closing |= FCGX_FClose(fr->out) != 0;
		if (closing) {
			linger(fr->ipcFd);
			fr->detached = 1; /* libfcgi then closes at once, its own wait done */
		}
	}
	FCGX_Finish_r(fr);
}

void fcgi_io_read_request(struct fcgi_io_conn *c, struct request *req)
{
	static __thread char path[1024];
	FCGX_Request *fr = c->fr;

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
	req->body = c->buf->body;
	c->buf->body[0] = '\0';
	req->read_body = read_body;
	req->conn = c;
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
