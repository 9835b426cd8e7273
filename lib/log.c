/* log.c — JSON-lines logging. See log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "secmem.h"

static char log_program[32] = "otp";
static enum log_level log_min = LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = { "DEBUG", "INFO", "WARNING", "ERROR" };

void log_init(const char *program, enum log_level min_level)
{
	snprintf(log_program, sizeof log_program, "%s", program);
	log_min = min_level;
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

int log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "WARN") == 0) {
		*out = LOG_WARNING;
		return 0;
	}
	return -1;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report a failing log */
		buf += n;
		len -= (size_t)n;
	}
}

void log_json(enum log_level level, const char *message, json_t *fields)
{
	json_t *line = NULL;
	char stamp[CLOCK_ISO_LEN + 8];
	int64_t now;
	char *text = NULL;
	size_t len;

	if (level < log_min)
		goto out;
	now = clock_now_ms();
	if (clock_format_utc(now / 1000, stamp) != 0)
		goto out;
	/* "…:SSZ" becomes "…:SS.mmmZ" */
	snprintf(stamp + 19, sizeof stamp - 19, ".%03dZ", (int)(now % 1000 + 1000) % 1000);

	line = json_pack("{s:s, s:s, s:s, s:i, s:s}", "timestamp", stamp, "level",
			 level_names[level], "program", log_program, "pid", (int)getpid(),
			 "message", message);
	if (line == NULL)
		goto out;
	if (fields != NULL)
		json_object_update(line, fields);
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		goto out;
	len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: the buffer is written by length */
	write_all(log_fd, text, len + 1);
out:
	secmem_json_free(text);
	json_decref(line);
	json_decref(fields);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	log_json(level, buf, NULL);
}

void log_printable(const char *in, char *out, size_t cap)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; in[i] != '\0' && i + 1 < cap; i++)
		out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
	out[i] = '\0';
}

void log_mask_chat_id(const char *chat_id, char out[LOG_MASKED_LEN])
{
	size_t len = strnlen(chat_id, LOG_MASKED_LEN - 1);
	size_t keep_head = 0, i;

	if (len > 0 && (chat_id[0] == '-' || chat_id[0] == '@'))
		keep_head = 1;
	if (chat_id[0] == '-' && len > 4 && strncmp(chat_id, "-100", 4) == 0)
		keep_head = 4; /* channel/supergroup ids: the prefix is not identifying */
	for (i = 0; i < len; i++) {
		if (i < keep_head || i + 3 >= len)
			out[i] = chat_id[i];
		else
			out[i] = '*';
	}
	out[len] = '\0';
}
