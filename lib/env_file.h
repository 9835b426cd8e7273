/* env_file.h — KEY=VALUE settings files (.env, OTP_ENV_FILE, the shared-hosting wrapper's).
 *
 * The syntax only: which keys a file may hold is the caller's (cfg.c) to say. */
#ifndef OTP_ENV_FILE_H
#define OTP_ENV_FILE_H

#include <stddef.h>

/* Says whether key may stand in the file: 0, or nonzero with the reason in why. */
typedef int (*env_file_refuse_fn)(const char *key, void *ctx, char *why, size_t whylen);

/* Reads a .env-style file: KEY=VALUE lines, '#' comments, blank lines, an optional "export ",
 * values optionally in single or double quotes, no expansion. Each key the environment does not
 * already set is set. A line longer than 4095 bytes (its newline aside) is an error, not split;
 * so is a key refuse() refuses. what names the file in an error ("OTP_ENV_FILE").
 * Returns 0, or -1 with "FILE:LINE: reason" in err. */
int env_file_read(const char *path, const char *what, env_file_refuse_fn refuse, void *ctx,
		  char *err, size_t errlen);

/* Parses one line of such a file. Returns 1 with key/value copied out (NUL-terminated, truncated
 * to their sizes is an error), 0 for a blank or comment line, -1 with a reason in err. */
int env_file_parse_line(const char *line, char *key, size_t keylen, char *value, size_t valuelen,
			char *err, size_t errlen);

#endif
