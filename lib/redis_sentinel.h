/* redis_sentinel.h — finding the Redis primary through Redis Sentinel (OTP_STORE=
 * redis+sentinel://h1,h2,h3/<master-name>), for the Redis backend (store_redis.c).
 *
 * The sentinels are asked in turn, starting with the one that answered last, for the address
 * of the master they watch (SENTINEL get-master-addr-by-name); the backend then connects there
 * and checks with ROLE that the server is a primary before it writes, and asks again (with its
 * backoff) after a connection error, a READONLY answer or a primary that turned replica.
 * Sentinels answer over plain TCP like any Redis: every reply is checked for its type, shape
 * and bounds before use (store_redis_reply.h's rules) and anything else is a failure; an
 * address is believed only once ROLE, asked of the server itself, says it is a primary.
 *
 * A change of primary is logged once per process (whichever handle meets it first) and counted
 * for /metrics (redis_sentinel_changes_take). */
#ifndef OTP_REDIS_SENTINEL_H
#define OTP_REDIS_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include "store_url.h"

struct redisReply;

/* A server's address as a sentinel gives it. */
struct redis_sentinel_primary {
	char host[STORE_URL_HOST_MAX];
	int port;
};

/* Asks the sentinels of u (u->kind STORE_REDIS_SENTINEL) for u->master's address, one after
 * another from index *next (updated to the one that answered, so that it is asked first next
 * time), each within timeout_ms for its connection, AUTH (password, may be NULL) and answer, and
 * all of them before the monotonic instant deadline_ms (clock_mono_ms()). The password is sent
 * from a buffer wiped after. Returns 0 with *out, or -1 with the last sentinel's failure in err
 * (a sentinel that does not know the master is one). */
int redis_sentinel_ask(const struct store_url *u, const char *password, int *next,
		       int timeout_ms, int64_t deadline_ms, struct redis_sentinel_primary *out,
		       char *err, size_t errlen);

/* SENTINEL get-master-addr-by-name's reply: nil (the sentinel does not know the master:
 * *known 0), or {host, port}: a host of 1 to STORE_URL_HOST_MAX - 1 bytes of letters, digits,
 * '.', ':', '-' and '_' (a name, an IPv4 or IPv6 address) and a port in 1-65535. Returns 0, or
 * -1 with *why set. */
int redis_sentinel_reply_addr(const struct redisReply *r, struct redis_sentinel_primary *out,
			      int *known, const char **why);

/* ROLE's reply: {"master", offset, {{host, port, offset}, ...}} (*is_primary 1, *replicas the
 * replicas streaming from it: one still in its first copy is not listed), {"slave", host, port, state, offset} or {"sentinel", {names}}
 * (*is_primary 0, *replicas 0). Returns 0, or -1 with *why set. */
int redis_sentinel_reply_role(const struct redisReply *r, int *is_primary, int *replicas,
			      const char **why);

/* INFO replication's reply: a string holding the line connected_slaves:N (0-65535): every
 * replica connected to the primary, whatever its state (ROLE lists only those streaming).
 * Returns 0 with *replicas, or -1 with *why set. */
int redis_sentinel_reply_info_replicas(const struct redisReply *r, int *replicas,
				       const char **why);

/* A handle found master's primary at p: the first address this process meets is logged (INFO);
 * each later different one is a change, logged once (WARNING) and counted. Thread-safe. */
void redis_sentinel_note_primary(const char *master, const struct redis_sentinel_primary *p);

/* Changes of primary this process met since the last call (for otp_store_primary_changes_total). */
long redis_sentinel_changes_take(void);

#endif
