/* message.h — the text sent to Telegram, from MESSAGE_TEMPLATE. */
#ifndef OTP_MESSAGE_H
#define OTP_MESSAGE_H

#include <stddef.h>

/* Telegram's limit for a message text is 4096 characters; this is the byte room we allow. */
#define MESSAGE_MAX 16384

/* Renders tmpl (HTML) with {otp} and {sec} replaced by the HTML-escaped values into out.
 * Other text is copied as is: the template is the operator's HTML. Returns 0, or -1 when the
 * result does not fit in cap bytes. out holds the OTP: the caller wipes it. */
int message_render(const char *tmpl, const char *otp, int seconds, char *out, size_t cap);

/* Appends s to out at *len with &, <, >, " escaped. Returns 0, or -1 when it does not fit. */
int message_html_escape(const char *s, char *out, size_t cap, size_t *len);

#endif
