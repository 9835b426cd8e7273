/* log.h — JSON-lines logging to stderr (lighttpd's error log for otp-fcgi).
 *
 * One line per event: {"timestamp":...,"level":...,"program":...,"pid":...,"message":...,<fields>}.
 * Lines are written with a single write(2), so threads and processes sharing the descriptor do not
 * interleave. Callers never pass an OTP or the bot token; chat ids go through log_mask_chat_id(). */
#ifndef OTP_LOG_H
#define OTP_LOG_H

#include <stddef.h>

#include <jansson.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };

/* Sets the program name written on each line and the lowest level that is written.
 * May be called again (tests do); the name is copied. */
void log_init(const char *program, enum log_level min_level);

/* Sends lines to fd instead of stderr (the fd stays the caller's). */
void log_set_fd(int fd);

/* Parses DEBUG, INFO, WARNING (or WARN), ERROR, any case. Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* Writes one line with the given message and extra fields. Takes ownership of fields (a JSON
 * object, or NULL). */
void log_json(enum log_level level, const char *message, json_t *fields);

/* Writes one line whose message is formatted like printf. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Copies untrusted bytes for a log line: printable ASCII kept, anything else '?', cut to fit. */
void log_printable(const char *in, char *out, size_t cap);

/* Room for a masked chat id (chat ids are at most 33 bytes). */
#define LOG_MASKED_LEN 40

/* Masks a chat id for logs: keeps a leading '-' (or "-100") or '@' and the last three characters,
 * stars the rest ("******789", "-100*******890", "@********ame"). */
void log_mask_chat_id(const char *chat_id, char out[LOG_MASKED_LEN]);

#endif
