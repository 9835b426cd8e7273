/* tg_request.h — the JSON bodies of the Bot API calls we make. Pure: no I/O; the transport
 * (tg.h) posts them. */
#ifndef OTP_TG_REQUEST_H
#define OTP_TG_REQUEST_H

#include <stddef.h>

#define TG_DELETE_MESSAGES_MAX 100 /* message ids one deleteMessages call takes */

/* Appends s as a JSON string literal (with quotes) to buf at *len, within cap.
 * Returns 0, or -1 if it does not fit. */
int tg_json_quote(char *buf, size_t cap, size_t *len, const char *s);

/* sendMessage's body into buf (cap bytes), its length in *len: chat_id, html_text with
 * parse_mode HTML and protect_content, and allow_paid_broadcast when paid_broadcast is set.
 * Returns 0, or -1 when it does not fit. The body holds the OTP: the caller wipes buf, all cap
 * bytes after a failure (a part may have been written), else *len + 1. */
int tg_request_send_message(char *buf, size_t cap, size_t *len, const char *chat_id,
			    const char *html_text, int paid_broadcast);

/* The body deleting ids[0..n) in chat_id into buf (cap bytes), its length in *len:
 * deleteMessage's for n == 1 (message_id), deleteMessages's for 2..TG_DELETE_MESSAGES_MAX
 * (message_ids). Returns 0, or -1 when n is out of range or the body does not fit. */
int tg_request_delete(char *buf, size_t cap, size_t *len, const char *chat_id,
		      const long long *ids, int n);

#endif
