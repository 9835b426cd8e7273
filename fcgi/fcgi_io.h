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

/* Fills req from fr's parameters and, when CONTENT_LENGTH is within HTTP_BODY_MAX, its body
 * (read into buf). Without CONTENT_LENGTH the body is read to the end of the stream, and one
 * longer than HTTP_BODY_MAX sets req->body_too_large (answered 413). req points into fr and buf: valid until FCGX_Finish_r. */
void fcgi_io_read_request(FCGX_Request *fr, struct request_buf *buf, struct request *req);

/* Reads CONTENT_LENGTH (a web server's bytes: NULL when absent, "" as nginx sends on GET) into
 * req->content_length (-1: none), or sets req->content_length_bad for anything but a
 * non-negative decimal integer that fits a long long. */
void fcgi_io_parse_content_length(const char *v, struct request *req);

/* 1 when the listening socket (fd 0) is a Unix socket whose path no longer exists: the web
 * server that made it is gone (lighttpd removes its sockets as it exits) and no one can connect
 * any more. 0 otherwise (TCP, abstract or relative names, or the path is there). */
int fcgi_io_listener_gone(void);

/* Writes resp as the CGI reply: Status, Content-Type, Allow, Retry-After, then the JSON body. */
void fcgi_io_write_response(FCGX_Request *fr, const struct response *resp);

#endif
