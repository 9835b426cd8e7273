/* store_url.h — where the store lives, from one setting (OTP_STORE):
 *   sqlite:///abs/path/pending.db        SQLite file (a plain path means the same)
 *   redis://host[:port][/db]             Redis over TCP (port 6379, db 0 by default)
 *   redis+unix:///path/redis.sock[?db=N] Redis over a unix socket
 *   redis+sentinel://h1[:port],h2[:port],.../master-name[/db]
 *                                        the primary Redis Sentinel names master-name (each
 *                                        sentinel's port 26379 by default), over TCP
 * Any Redis form may end in "?prefix=P" (also "&prefix=P"): the key prefix, for tests that
 * share one server; OTP_REDIS_PREFIX is the setting for deployments. "clock=host" makes the
 * store take the instants the calling host gives as they are, instead of reading Redis's clock
 * (TIME) for them: for tests that set the time, never for hosts that share the server.
 * A password never goes in the URL (it would reach logs and `ps`): a URL with user info is
 * refused; the password comes from the file named by OTP_REDIS_PASSWORD_FILE (the sentinels':
 * OTP_REDIS_SENTINEL_PASSWORD_FILE).
 * Pure parsing, no I/O: unit-tested on its own. */
#ifndef OTP_STORE_URL_H
#define OTP_STORE_URL_H

#include <stddef.h>

#define STORE_URL_PATH_MAX 4096
#define STORE_URL_HOST_MAX 256
#define STORE_URL_PREFIX_MAX 64
#define STORE_URL_SENTINELS_MAX 8
#define STORE_URL_MASTER_MAX 64

enum store_kind { STORE_SQLITE, STORE_REDIS_TCP, STORE_REDIS_UNIX, STORE_REDIS_SENTINEL };

/* One server's address: a host name or an address (IPv6 without its brackets), and a port. */
struct store_url_node {
	char host[STORE_URL_HOST_MAX];
	int port;
};

struct store_url {
	enum store_kind kind;
	char path[STORE_URL_PATH_MAX];   /* SQLITE: the file; REDIS_UNIX: the socket */
	char host[STORE_URL_HOST_MAX];   /* REDIS_TCP (an IPv6 address without its brackets) */
	int port;                        /* REDIS_TCP */
	int db;                          /* REDIS_*: SELECT db (0-65535) */
	char prefix[STORE_URL_PREFIX_MAX]; /* REDIS_*: "?prefix=", or "" when absent */
	int clock_host;                  /* REDIS_*: "clock=host" (tests) */
	/* REDIS_SENTINEL: the sentinels to ask, in the URL's order, and the master's name */
	struct store_url_node sentinels[STORE_URL_SENTINELS_MAX];
	int nsentinels;
	char master[STORE_URL_MASTER_MAX];
};

/* Parses url into out. Returns 0, or -1 with a reason in err that never quotes the URL (it may
 * hold a password someone put there by mistake). */
int store_url_parse(const char *url, struct store_url *out, char *err, size_t errlen);

/* 1 if url names a Redis store, 0 otherwise (no validation). */
int store_url_is_redis(const char *url);

#endif
