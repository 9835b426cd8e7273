/* fcgi_io.h — FastCGI in and out: the only file that includes fcgiapp.h. Turns an accepted
 * FCGX_Request into a struct request and a struct response into the CGI reply. */
#ifndef OTP_FCGI_IO_H
#define OTP_FCGI_IO_H

#include <fcgiapp.h>

#include "http.h"

/* Room for a body up to HTTP_BODY_MAX plus one byte to notice a longer one. */
struct request_buf {
	char body[HTTP_BODY_MAX + 1];
};

/* One request being answered: libfcgi's and the buffer its body is read into. */
struct fcgi_io_conn {
	FCGX_Request *fr;
	struct request_buf *buf;
};

/* Fills req from the request's parameters, and sets req->read_body to read its body into
 * c->buf when the router asks (after the API key): when CONTENT_LENGTH is within
 * HTTP_BODY_MAX, that many bytes; without CONTENT_LENGTH, to the end of the stream, one
 * longer than HTTP_BODY_MAX setting req->body_too_large (answered 413). A body not all there
 * within the router's bound sets req->body_timed_out (408), and libfcgi then closes the
 * connection. req points into c: valid until FCGX_Finish_r. */
void fcgi_io_read_request(struct fcgi_io_conn *c, struct request *req);

/* Wipes what libfcgi holds of the request's stdin (the body: the OTP), in its stream buffer,
 * which it frees without wiping; nothing more can be read from the stream after. Call once the
 * body is read and before FCGX_Finish_r. When the stream is not laid out as expected, wipes
 * nothing and logs that once. */
void fcgi_io_wipe_input(FCGX_Request *fr);

/* Reads CONTENT_LENGTH (a web server's bytes: NULL when absent, "" as nginx sends on GET) into
 * req->content_length (-1: none), or sets req->content_length_bad for anything but a
 * non-negative decimal integer that fits a long long. */
void fcgi_io_parse_content_length(const char *v, struct request *req);

/* 1 when the listening socket (fd 0) is a Unix socket whose path no longer exists: the web
 * server that made it is gone (lighttpd removes its sockets as it exits) and no one can connect
 * any more. 0 otherwise (TCP, abstract or relative names, or the path is there). */
int fcgi_io_listener_gone(void);

/* Ends the request, as FCGX_Finish_r does, except for one wait: before closing the connection,
 * libfcgi reads what the web server still sends for as long as it keeps sending (a body
 * trickling in through Apache: without end); here that lasts at most two seconds. */
void fcgi_io_finish(FCGX_Request *fr);

/* Writes resp as the CGI reply: Status, Content-Type, Allow, Retry-After, then the JSON body. */
void fcgi_io_write_response(FCGX_Request *fr, const struct response *resp);

#endif
