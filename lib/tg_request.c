/* tg_request.c — the JSON bodies of our Bot API calls. See tg_request.h. */
#include "tg_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* Appends formatted text at *len within cap. Returns 0, or -1 when it does not fit. */
static int appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= cap)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

int tg_request_send_message(char *buf, size_t cap, size_t *len, const char *chat_id,
			    const char *html_text, int paid_broadcast)
{
	*len = 0;
	if (append(buf, cap, len, "{\"chat_id\":") != 0 || tg_json_quote(buf, cap, len, chat_id) != 0 ||
	    append(buf, cap, len, ",\"text\":") != 0 || tg_json_quote(buf, cap, len, html_text) != 0 ||
	    append(buf, cap, len, ",\"parse_mode\":\"HTML\",\"protect_content\":true") != 0 ||
	    (paid_broadcast && append(buf, cap, len, ",\"allow_paid_broadcast\":true") != 0) ||
	    append(buf, cap, len, "}") != 0)
		return -1;
	return 0;
}

int tg_request_delete(char *buf, size_t cap, size_t *len, const char *chat_id,
		      const long long *ids, int n)
{
	int i;

	*len = 0;
	if (n < 1 || n > TG_DELETE_MESSAGES_MAX)
		return -1;
	if (append(buf, cap, len, "{\"chat_id\":") != 0 || tg_json_quote(buf, cap, len, chat_id) != 0)
		return -1;
	if (n == 1)
		return appendf(buf, cap, len, ",\"message_id\":%lld}", ids[0]);
	if (append(buf, cap, len, ",\"message_ids\":[") != 0)
		return -1;
	for (i = 0; i < n; i++)
		if (appendf(buf, cap, len, "%s%lld", i > 0 ? "," : "", ids[i]) != 0)
			return -1;
	return append(buf, cap, len, "]}");
}
