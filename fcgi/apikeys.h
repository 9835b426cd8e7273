/* apikeys.h — who may call the POST endpoints: the API keys.
 *
 * Keys come from API_KEY (one unnamed key), OTP_API_KEYS ("key" or "name:key", separated by
 * commas) and OTP_API_KEYS_FILE: one key a line, "name key" or "name sha256:<64 hex digits>"
 * (the file then need not hold the key itself), optionally followed by "limit=N", the key's own
 * OTPs per minute; '#' starts a comment. All of them are accepted at once.
 *
 * Keys are kept only as SHA-256 digests: a presented key is hashed once and compared with every
 * key, each comparison in constant time, none skipped. The file is read again when it changes
 * (its inode, size or times; looked at by the next request at most once a second) or on
 * apikeys_reload() (SIGHUP); a new file that does not parse leaves the keys in force and is
 * logged once. Every function is safe to call from any thread. */
#ifndef OTP_APIKEYS_H
#define OTP_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#define APIKEY_NAME_MAX 32  /* [A-Za-z0-9_.-], 1 to this many bytes */
#define APIKEY_LIMIT_MAX 1000000

struct apikeys_config {
	const char *api_key; /* API_KEY, or NULL */
	const char *list;    /* OTP_API_KEYS, or NULL */
	const char *file;    /* OTP_API_KEYS_FILE, or NULL */
};

/* The key a request presented. */
struct apikey_match {
	char name[APIKEY_NAME_MAX + 1]; /* "" for an unnamed key */
	/* whose codes these are, kept with each pending row (revoke needs the same owner): the
	 * name, so that a rotated key keeps its codes; for an unnamed key "#" and the first 8 hex
	 * digits of its digest */
	char owner[APIKEY_NAME_MAX + 1];
	int limit_per_minute;           /* the key's own limit, or 0: OTP_KEY_LIMIT_PER_MINUTE */
};

struct apikeys;

/* Reads the keys. Returns NULL with one line naming what is wrong in err (never a key). With
 * no key configured at all, the result admits every request (apikeys_enabled() is 0). */
struct apikeys *apikeys_new(const struct apikeys_config *c, char *err, size_t errlen);
void apikeys_free(struct apikeys *k);

/* 1 when any key is configured: the POST endpoints then need one. */
int apikeys_enabled(const struct apikeys *k);

/* 1 with *m filled when presented (NUL-terminated, may be "") is one of the keys, else 0.
 * now_ms (a monotonic clock) paces the look at the file. */
int apikeys_check(struct apikeys *k, const char *presented, int64_t now_ms,
		  struct apikey_match *m);

/* Reads the file again at once. Returns 0, or -1 when it cannot be read or does not parse:
 * the keys in force stay, and the reason is logged. */
int apikeys_reload(struct apikeys *k);

/* How many keys are in force (for the start-up line and tests). */
int apikeys_count(struct apikeys *k);

/* Parses one line of the keys file into name, a digest and a limit (0: none given). Returns 1
 * for a key, 0 for a blank or comment line, -1 with the reason in err. Exposed for tests. */
int apikeys_parse_line(const char *line, char name[APIKEY_NAME_MAX + 1],
		       unsigned char digest[32], int *limit, char *err, size_t errlen);

#endif
