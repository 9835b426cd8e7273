/* message.c — rendering MESSAGE_TEMPLATE. See message.h. */
#include "message.h"

#include <stdio.h>
#include <string.h>

int message_html_escape(const char *s, char *out, size_t cap, size_t *len)
{
	for (; *s != '\0'; s++) {
		const char *rep;
		char one[2] = { *s, '\0' };
		size_t n;

		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		default: rep = one; break;
		}
		n = strlen(rep);
		if (*len + n >= cap)
			return -1;
		memcpy(out + *len, rep, n);
		*len += n;
	}
	out[*len] = '\0';
	return 0;
}

int message_render(const char *tmpl, const char *otp, int seconds, char *out, size_t cap)
{
	char sec[16];
	size_t len = 0;
	const char *p = tmpl;

	if (cap == 0)
		return -1;
	snprintf(sec, sizeof sec, "%d", seconds);
	out[0] = '\0';
	while (*p != '\0') {
		if (strncmp(p, "{otp}", 5) == 0) {
			if (message_html_escape(otp, out, cap, &len) != 0)
				return -1;
			p += 5;
		} else if (strncmp(p, "{sec}", 5) == 0) {
			if (message_html_escape(sec, out, cap, &len) != 0)
				return -1;
			p += 5;
		} else {
			if (len + 1 >= cap)
				return -1;
			out[len++] = *p++;
			out[len] = '\0';
		}
	}
	return 0;
}
