/* store_redis.c — the Redis backend of store.h, redis_store_ops (store_backend.h), for
 * deployments where several hosts share the pending deletions, the limits, the send queue, the
 * pauses and the heartbeat. With store_redis_reply.c (which checks every reply before use) and
 * redis_sentinel.c (which finds the primary through Redis Sentinel), the only files that
 * include hiredis.h. Also store.h's store_primary_changes_take(), Sentinel's own.
 *
 * Key layout (P = the prefix, "otp:" by default; docs/store.md shows them with redis-cli),
 * every instant on Redis's clock (LUA_CLOCK):
 *   P pending:due          sorted set: pending id -> next try (ms); due when score <= now
 *   P pending:<id>         hash: chat_id, chat_key, message_id, delete_at_ms, attempts,
 *                          created_at_ms, owner (the API key's name; absent without keys)
 *   P pending:by-message   hash: "<chat_key>:<message_id>" -> id (POST /revoke-otp)
 *   P pending:seq          counter of pending ids
 *   P rate:<scope>:<subj>  list of counted events "<at_ms>:<id>", newest first; expires with
 *                          its window
 *   P rate:seq             counter of event ids
 *   P queue:send           the send queue's next free instant (µs)
 *   P pause:<kind>         hash: until_ms, set_by (Telegram's 429 on "send" or "delete")
 *   P heartbeat:<program>  Redis's now (ms) at the latest beat of any instance of program
 *   P metrics:<host>       hash: "<name>{<labels>}" -> total of that host's processes
 * Nothing else: no OTP, no message text.
 *
 * Every update touching more than one key is one Lua script (atomic), loaded once per
 * connection with SCRIPT LOAD and run with EVALSHA (loaded again after NOSCRIPT: a restarted
 * server forgets them). A lost connection is reopened on use, at most once per backoff step
 * (100 ms doubling to 2 s); meanwhile calls fail at once. The first failure of an outage and
 * the recovery are logged once per process. Reads are retried once on a fresh connection;
 * writes are not (a write whose answer was lost may have happened). Each command has one
 * deadline for its whole reply (COMMAND_TIMEOUT_MS); a reply of the wrong shape is a store
 * error, logged once per call and process, and drops the connection.
 *
 * With Redis Sentinel (redis+sentinel://) the server is the primary the sentinels name
 * (redis_sentinel.h), asked again at every connection; ROLE must say it is a primary. A READONLY
 * answer (the primary turned replica) drops the connection like a lost one, and so does a
 * server the sentinels no longer name or whose ROLE no longer says primary (both asked again
 * every ROLE_CHECK_MS).
 *
 * Replicas: a pending row is acknowledged only once min_replicas replicas hold it (WAIT, after
 * the script that wrote it); by default 1 when the primary has a replica (INFO replication,
 * asked then), else none, and then, with Sentinel, only if the sentinels still name it. */
#define _GNU_SOURCE
#include "store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "redis_sentinel.h"
#include "secmem.h"
#include "store_redis_reply.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 2000
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
/* with Sentinel: a new primary is a question to a sentinel away, so ask again sooner */
#define SENTINEL_BACKOFF_MAX_MS 500
/* with Sentinel: how often a live connection checks that its server is still the primary */
#define ROLE_CHECK_MS 5000
#define DEFAULT_WAIT_MS 1000
/* asking the sentinels: each within SENTINEL_ASK_MS, all within SENTINEL_ROUND_MS */
#define SENTINEL_ASK_MS 300
#define SENTINEL_ROUND_MS 1000
#define DEFAULT_LEASE_MS 30000
#define DEFAULT_PREFIX "otp:"
#define KEY_MAX 256
#define ARGS_MAX (8 + 5 * STORE_RATE_RULES_MAX + 2 * 64)

/* ---- the scripts ------------------------------------------------------------------------- */

/* The scripts are the files under lib/redis/ (their KEYS, ARGV and answers written at their top),
 * each after the helpers from lib/redis/helpers/ it calls; the Makefile embeds every file as a
 * string macro LUA_<NAME>. */
#include "redis_scripts.inc"

enum script_id {
	SC_RATE_TAKE,
	SC_RATE_RELEASE,
	SC_RATE_PRUNE,
	SC_PENDING_ADD,
	SC_PENDING_DUE,
	SC_PENDING_NEXT,
	SC_PENDING_LAST,
	SC_PENDING_REMOVE,
	SC_PENDING_RETRY,
	SC_PENDING_CLAIM,
	SC_PENDING_RELEASE,
	SC_PAUSE_EXTEND,
	SC_PAUSE_GET,
	SC_HEARTBEAT_SET,
	SC_HEARTBEAT_GET,
	SC_METRICS_ADD,
	SC_COUNT_
};

/* Each script's first line names it (SCRIPT LOAD keeps the text: for redis-cli and tests). */
#define SCRIPT(name, text) ("-- " name "\n" text)

static const char *const script_src[SC_COUNT_] = {
	[SC_RATE_TAKE] = SCRIPT("rate_take", LUA_AT_OF LUA_CLOCK LUA_TRIM LUA_RATE_TAKE),
	[SC_RATE_RELEASE] = SCRIPT("rate_release", LUA_AT_OF LUA_RATE_RELEASE),
	[SC_RATE_PRUNE] = SCRIPT("rate_prune", LUA_AT_OF LUA_CLOCK LUA_TRIM LUA_RATE_PRUNE),
	[SC_PENDING_ADD] = SCRIPT("pending_add", LUA_CLOCK LUA_PENDING_ADD),
	[SC_PENDING_DUE] = SCRIPT("pending_due", LUA_CLOCK LUA_PENDING_DUE),
	[SC_PENDING_NEXT] = SCRIPT("pending_next", LUA_CLOCK LUA_PENDING_NEXT),
	[SC_PENDING_LAST] = SCRIPT("pending_last", LUA_CLOCK LUA_PENDING_LAST),
	[SC_PENDING_REMOVE] = SCRIPT("pending_remove", LUA_PENDING_REMOVE),
	[SC_PENDING_RETRY] = SCRIPT("pending_retry", LUA_CLOCK LUA_PENDING_RETRY),
	[SC_PENDING_CLAIM] = SCRIPT("pending_claim", LUA_CLOCK LUA_PENDING_CLAIM),
	[SC_PENDING_RELEASE] = SCRIPT("pending_release", LUA_CLOCK LUA_PENDING_RELEASE),
	[SC_PAUSE_EXTEND] = SCRIPT("pause_extend", LUA_CLOCK LUA_PAUSE_EXTEND),
	[SC_PAUSE_GET] = SCRIPT("pause_get", LUA_CLOCK LUA_PAUSE_GET),
	[SC_HEARTBEAT_SET] = SCRIPT("heartbeat_set", LUA_CLOCK LUA_HEARTBEAT_SET),
	[SC_HEARTBEAT_GET] = SCRIPT("heartbeat_get", LUA_CLOCK LUA_HEARTBEAT_GET),
	[SC_METRICS_ADD] = SCRIPT("metrics_add", LUA_METRICS_ADD),
};

/* ---- the handle ---------------------------------------------------------------------------- */

struct redis_store {
	redisContext *c;
	struct store_url url;
	char *password;               /* wiped and freed on close */
	char *sentinel_password;      /* the sentinels' (redis+sentinel://), the same */
	struct redis_sentinel_primary primary; /* redis+sentinel://: where the sentinels said */
	int sentinel_next;            /* the sentinel to ask first */
	int replicas;                 /* the primary's replicas when this connection last asked */
	int64_t role_checked_ms;      /* clock_mono_ms() of the last ROLE */
	int min_replicas;             /* WAIT for that many after a pending row; -1: 1 if replicas */
	int wait_ms;
	uint64_t connection;          /* counts the connections made: which one wrote a row */
	char prefix[STORE_URL_PREFIX_MAX];
	char host[128];               /* whose metrics */
	int64_t lease_ms;
	int64_t next_connect_ms;      /* no reconnection attempt before this */
	int64_t backoff_ms;
	int64_t handshake_end_ms;     /* while connecting (clock_mono_ms()): one deadline for it all */
	char sha[SC_COUNT_][41];
	char err[256];
};

/* What a call's reply is checked against, for the log: each call whose reply had the wrong
 * shape is logged once per process (a server answering nonsense would flood the log). */
enum call_id {
	CALL_SCRIPT_ = 0,             /* + script_id: EVALSHA of that script */
	CALL_SCRIPT_LOAD = SC_COUNT_,
	CALL_AUTH,
	CALL_SELECT,
	CALL_ROLE,
	CALL_INFO,
	CALL_WAIT,
	CALL_LLEN,
	CALL_ZCARD,
	CALL_HGETALL,
	CALL_TOO_LARGE,               /* any call: refused while hiredis read it */
	CALL_COUNT_
};

/* One outage is logged once per process, not once per thread's handle. */
static atomic_int outage_logged;
static atomic_int bad_reply_logged[CALL_COUNT_];

static void set_err(struct redis_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct redis_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
}

static const char *redis_store_strerror(const void *h)
{
	const struct redis_store *s = h;

	return s->err;
}

/* "127.0.0.1:6379" or the socket path, for messages (never a password: the URL has none). */
static void describe(const struct redis_store *s, char *out, size_t outlen)
{
	if (s->url.kind == STORE_REDIS_UNIX)
		snprintf(out, outlen, "%s", s->url.path);
	else if (s->url.kind == STORE_REDIS_SENTINEL && s->primary.host[0] == '\0')
		snprintf(out, outlen, "the primary of %s", s->url.master);
	else if (s->url.kind == STORE_REDIS_SENTINEL)
		snprintf(out, outlen, "%s:%d (primary of %s)", s->primary.host, s->primary.port,
			 s->url.master);
	else
		snprintf(out, outlen, "%s:%d", s->url.host, s->url.port);
}

static void drop_connection(struct redis_store *s)
{
	if (s->c != NULL)
		redisFree(s->c);
	s->c = NULL;
}

/* s->err, the first time this process meets a wrong reply to call. */
static void log_bad_reply(const struct redis_store *s, int call)
{
	char where[STORE_URL_PATH_MAX + 16];

	if (atomic_exchange(&bad_reply_logged[call], 1) == 0) {
		describe(s, where, sizeof where);
		log_msg(LOG_ERROR, "Redis at %s: %s; taken as a store error (logged once)", where,
			s->err);
	}
}

/* A reply that is not what call (a call_id, or the script_id of EVALSHA) expects (why, from
 * store_redis_reply.h): a store error. The connection is dropped: what else the server sends on
 * it cannot be trusted either. Returns -1. */
static int bad_reply(struct redis_store *s, int call, const char *what, const char *why)
{
	set_err(s, "%s: unexpected reply from Redis (%s)", what, why);
	log_bad_reply(s, call);
	drop_connection(s);
	return -1;
}

/* The connection failed (s->c->err) or did not answer in time: the reason in s->err. */
static void io_err(struct redis_store *s, const char *what)
{
	if (s->c->err == REDIS_ERR_OOM) {
		set_err(s, "%s: unexpected reply from Redis (an array or string beyond the bounds, "
			"or out of memory)", what);
		log_bad_reply(s, CALL_TOO_LARGE);
	} else
		set_err(s, "%s: %s", what, s->c->errstr[0] != '\0' ? s->c->errstr : "no answer");
}

/* Writes what is buffered for the server, then reads one reply, within COMMAND_TIMEOUT_MS in all
 * (and within the handshake's deadline while connecting): a server that trickles its reply a
 * byte at a time cannot hold the caller longer than that (the socket's own timeout bounds each
 * read only). Returns the reply (the caller frees it), or
 * NULL with the reason in s->err; the connection is then unusable. */
static redisReply *exchange(struct redis_store *s, const char *what)
{
	int64_t deadline = clock_mono_ms() + COMMAND_TIMEOUT_MS, left;

	if (s->handshake_end_ms != 0 && s->handshake_end_ms < deadline)
		deadline = s->handshake_end_ms;
	void *reply = NULL;
	struct pollfd pfd = { .fd = s->c->fd };
	int done = 0, n;

	while (!done) {
		if (redisBufferWrite(s->c, &done) != REDIS_OK) {
			io_err(s, what);
			return NULL;
		}
	}
	for (;;) {
		if (redisGetReplyFromReader(s->c, &reply) != REDIS_OK) {
			io_err(s, what);
			return NULL;
		}
		if (reply != NULL)
			return reply;
		left = deadline - clock_mono_ms();
		pfd.events = POLLIN;
		n = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			set_err(s, "%s: %s", what, n == 0 ? "no answer in time" : strerror(errno));
			s->c->err = REDIS_ERR_IO; /* half a reply may be buffered: never reuse it */
			return NULL;
		}
		if (redisBufferRead(s->c) != REDIS_OK) {
			io_err(s, what);
			return NULL;
		}
	}
}

/* An error answer r to what, into s->err; r is freed. READONLY is a primary that turned replica
 * (a failover): the connection is dropped, so that the next call finds the primary anew. */
static void error_reply(struct redis_store *s, const char *what, redisReply *r)
{
	set_err(s, "%s: %.200s", what, r->str);
	if (strncmp(r->str, "READONLY", 8) == 0)
		drop_connection(s);
	freeReplyObject(r);
}

/* A command on the raw context: the reply, or NULL with a reason in s->err when it fails or
 * answers an error. */
static redisReply *command(struct redis_store *s, const char *what, int argc, const char **argv,
			   const size_t *lens)
{
	redisReply *r;

	if (redisAppendCommandArgv(s->c, argc, argv, lens) != REDIS_OK) {
		io_err(s, what);
		return NULL;
	}
	if ((r = exchange(s, what)) == NULL)
		return NULL;
	if (r->type == REDIS_REPLY_ERROR) {
		error_reply(s, what, r);
		return NULL;
	}
	return r;
}

/* A command whose reply must be "+OK". */
static int command_ok(struct redis_store *s, enum call_id call, const char *what, int argc,
		      const char **argv, const size_t *lens)
{
	redisReply *r = command(s, what, argc, argv, lens);
	const char *why;
	int rc = 0;

	if (r == NULL)
		return -1;
	if (redis_reply_ok(r, &why) != 0)
		rc = bad_reply(s, call, what, why);
	freeReplyObject(r);
	return rc;
}

/* AUTH, written from a buffer of ours that is wiped after: hiredis 0.14 formats every command
 * into an output buffer it frees without wiping (and takes no allocator), so the password would
 * linger in freed memory. The reply is read through hiredis as usual; it never echoes it. */
static int authenticate(struct redis_store *s)
{
	size_t len = strlen(s->password), cap = len + 64, n, done = 0;
	char *cmd = malloc(cap);
	redisReply *r = NULL;
	const char *why;
	ssize_t w;
	int rc = -1;

	if (cmd == NULL) {
		set_err(s, "AUTH: out of memory");
		return -1;
	}
	n = (size_t)snprintf(cmd, cap, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n", len);
	memcpy(cmd + n, s->password, len);
	memcpy(cmd + n + len, "\r\n", 2);
	n += len + 2;
	while (done < n) {
		w = write(s->c->fd, cmd + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			set_err(s, "AUTH: sending: %s", w < 0 ? strerror(errno) : "connection closed");
			goto out;
		}
		done += (size_t)w;
	}
	if ((r = exchange(s, "AUTH")) == NULL)
		goto out;
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(s, "AUTH: %.200s", r->str);
		goto out;
	}
	if (redis_reply_ok(r, &why) != 0) {
		bad_reply(s, CALL_AUTH, "AUTH", why);
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	secmem_wipe(cmd, cap);
	free(cmd);
	return rc;
}

static int load_script(struct redis_store *s, enum script_id id)
{
	const char *argv[3] = { "SCRIPT", "LOAD", script_src[id] };
	size_t lens[3] = { 6, 4, strlen(script_src[id]) };
	redisReply *r = command(s, "SCRIPT LOAD", 3, argv, lens);
	const char *why;
	int rc = 0;

	if (r == NULL)
		return -1;
	if (redis_reply_sha(r, s->sha[id], &why) != 0)
		rc = bad_reply(s, CALL_SCRIPT_LOAD, "SCRIPT LOAD", why);
	freeReplyObject(r);
	return rc;
}

/* ROLE: whether the server is a primary. With Sentinel a server that is not the primary is
 * refused, so that the sentinels are asked again. Returns 0, or -1 with the reason in s->err. */
static int check_role(struct redis_store *s)
{
	const char *argv[1] = { "ROLE" }, *why;
	size_t lens[1] = { 4 };
	redisReply *r = command(s, "ROLE", 1, argv, lens);
	int primary, online, rc = 0;

	if (r == NULL)
		return -1;
	if (redis_sentinel_reply_role(r, &primary, &online, &why) != 0) {
		rc = bad_reply(s, CALL_ROLE, "ROLE", why);
	} else if (!primary && s->url.kind == STORE_REDIS_SENTINEL) {
		set_err(s, "%s:%d, named by the sentinels, is not the primary of %s (ROLE): asking "
			"again", s->primary.host, s->primary.port, s->url.master);
		rc = -1;
	} else {
		s->role_checked_ms = clock_mono_ms();
	}
	freeReplyObject(r);
	return rc;
}

/* Whether a live connection is due for check_live(): with Sentinel, whose primary may have been
 * replaced without closing it. */
static int role_check_due(const struct redis_store *s)
{
	return s->url.kind == STORE_REDIS_SENTINEL &&
	       clock_mono_ms() - s->role_checked_ms >= ROLE_CHECK_MS;
}

/* With Sentinel: whether the sentinels still name the server of this connection. A primary
 * that was frozen while they failed over wakes up still a primary in its own eyes, without
 * replicas, and would take writes that its demotion then throws away. Sentinels out of reach
 * change nothing (the primary keeps serving). Returns 0, or -1 with the reason in s->err: the
 * connection is to be dropped. */
static int check_still_named(struct redis_store *s)
{
	struct redis_sentinel_primary now;
	char why[256];

	if (s->url.kind == STORE_REDIS_SENTINEL &&
	    redis_sentinel_ask(&s->url, s->sentinel_password, &s->sentinel_next, SENTINEL_ASK_MS,
			       clock_mono_ms() + SENTINEL_ROUND_MS, &now, why, sizeof why) == 0 &&
	    (strcmp(now.host, s->primary.host) != 0 || now.port != s->primary.port)) {
		set_err(s, "the sentinels name %s:%d as the primary of %s now, no longer %s:%d",
			now.host, now.port, s->url.master, s->primary.host, s->primary.port);
		return -1;
	}
	return 0;
}

/* A live connection's periodic check: still named by the sentinels, still a primary (ROLE).
 * Returns 0, or -1 with the reason in s->err: the connection is to be dropped. */
static int check_live(struct redis_store *s)
{
	return check_still_named(s) == 0 ? check_role(s) : -1;
}

/* What connect_now() does, without its deadline. */
static int handshake(struct redis_store *s)
{
	struct timeval ct = { CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000 };
	struct timeval tt = { COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000 };
	char db[16];
	int i;

	drop_connection(s);
	s->replicas = 0;
	if (s->url.kind == STORE_REDIS_SENTINEL &&
	    redis_sentinel_ask(&s->url, s->sentinel_password, &s->sentinel_next, SENTINEL_ASK_MS,
			       clock_mono_ms() + SENTINEL_ROUND_MS, &s->primary, s->err,
			       sizeof s->err) != 0)
		return -1;
	if (s->url.kind == STORE_REDIS_UNIX)
		s->c = redisConnectUnixWithTimeout(s->url.path, ct);
	else if (s->url.kind == STORE_REDIS_SENTINEL)
		s->c = redisConnectWithTimeout(s->primary.host, s->primary.port, ct);
	else
		s->c = redisConnectWithTimeout(s->url.host, s->url.port, ct);
	if (s->c == NULL) {
		set_err(s, "connecting to Redis: out of memory");
		return -1;
	}
	if (s->c->err != 0) {
		set_err(s, "connecting to Redis: %s", s->c->errstr);
		goto fail;
	}
	if (redis_reply_limit(s->c->reader) != 0) {
		set_err(s, "connecting to Redis: out of memory");
		goto fail;
	}
	if (redisSetTimeout(s->c, tt) != REDIS_OK) {
		set_err(s, "setting the Redis timeout: %s", s->c->errstr);
		goto fail;
	}
	if (s->password != NULL && authenticate(s) != 0)
		goto fail;
	/* asked again once ROLE answered: a server frozen while the sentinels named it answers
	 * once it thaws, and may have been replaced meanwhile */
	if (s->url.kind == STORE_REDIS_SENTINEL &&
	    (check_role(s) != 0 || check_still_named(s) != 0))
		goto fail;
	if (s->url.db != 0) {
		const char *argv[2] = { "SELECT", db };
		size_t lens[2] = { 6, 0 };

		lens[1] = (size_t)snprintf(db, sizeof db, "%d", s->url.db);
		if (command_ok(s, CALL_SELECT, "SELECT", 2, argv, lens) != 0)
			goto fail;
	}
	for (i = 0; i < SC_COUNT_; i++)
		if (load_script(s, (enum script_id)i) != 0)
			goto fail;
	if (s->url.kind == STORE_REDIS_SENTINEL)
		redis_sentinel_note_primary(s->url.master, &s->primary);
	return 0;
fail:
	drop_connection(s);
	return -1;
}

/* Connects (with Sentinel: asks where first), authenticates, checks the role, selects the
 * database and loads the scripts, all of it within CONNECT_TIMEOUT_MS + COMMAND_TIMEOUT_MS
 * (+ SENTINEL_ROUND_MS with Sentinel). */
static int connect_now(struct redis_store *s)
{
	int rc;

	s->handshake_end_ms = clock_mono_ms() + CONNECT_TIMEOUT_MS + COMMAND_TIMEOUT_MS +
			      (s->url.kind == STORE_REDIS_SENTINEL ? SENTINEL_ROUND_MS : 0);
	rc = handshake(s);
	s->handshake_end_ms = 0;
	return rc;
}

/* A live connection, reconnecting when the backoff allows. Logs the start and the end of an
 * outage once per process. */
static int ensure_connected(struct redis_store *s)
{
	int64_t backoff_max = s->url.kind == STORE_REDIS_SENTINEL ? SENTINEL_BACKOFF_MAX_MS
								   : BACKOFF_MAX_MS;
	char where[STORE_URL_PATH_MAX + 16];
	int64_t now;

	if (s->c != NULL && s->c->err == 0 && (!role_check_due(s) || check_live(s) == 0))
		return 0;
	drop_connection(s);
	now = clock_mono_ms();
	if (now < s->next_connect_ms) {
		/* s->err still holds the failure that started the wait */
		return -1;
	}
	describe(s, where, sizeof where);
	if (connect_now(s) != 0) {
		s->backoff_ms = s->backoff_ms == 0 ? BACKOFF_FIRST_MS : s->backoff_ms * 2;
		if (s->backoff_ms > backoff_max)
			s->backoff_ms = backoff_max;
		s->next_connect_ms = now + s->backoff_ms;
		if (atomic_exchange(&outage_logged, 1) == 0)
			log_msg(LOG_ERROR, "Redis at %s is unreachable (%s); retrying with backoff",
				where, s->err);
		return -1;
	}
	s->backoff_ms = 0;
	s->next_connect_ms = 0;
	s->connection++;
	if (atomic_exchange(&outage_logged, 0) == 1)
		log_msg(LOG_WARNING, "Redis at %s is reachable again", where);
	return 0;
}

/* Runs one command. Reads may be retried once on a fresh connection: a read that failed
 * because the server restarted should not fail the request. Returns the reply (the caller
 * frees it) or NULL with the reason in s->err. */
static redisReply *run(struct redis_store *s, int idempotent, const char *what, int argc,
		       const char **argv, const size_t *lens)
{
	redisReply *r = NULL;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		if (ensure_connected(s) != 0)
			return NULL;
		if ((r = command(s, what, argc, argv, lens)) != NULL)
			return r;
		if (s->c == NULL || s->c->err == 0)
			return NULL; /* an error answer (READONLY dropped the connection) */
		drop_connection(s); /* a broken connection */
		if (!idempotent)
			return NULL;
	}
	return NULL;
}

/* Runs script id with n keys and the rest of argv as arguments; reloads it after NOSCRIPT. */
static redisReply *eval(struct redis_store *s, enum script_id id, int idempotent, const char *what,
			int nkeys, int nargs, const char **args, size_t *lens)
{
	const char *argv[ARGS_MAX + 3];
	size_t argl[ARGS_MAX + 3];
	char nk[16];
	redisReply *r;
	int i, attempt;

	if (nargs > ARGS_MAX) {
		set_err(s, "%s: too many arguments", what);
		return NULL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		if (ensure_connected(s) != 0)
			return NULL;
		argv[0] = "EVALSHA";
		argl[0] = 7;
		argv[1] = s->sha[id];
		argl[1] = strlen(s->sha[id]);
		argv[2] = nk;
		argl[2] = (size_t)snprintf(nk, sizeof nk, "%d", nkeys);
		for (i = 0; i < nargs; i++) {
			argv[3 + i] = args[i];
			argl[3 + i] = lens[i];
		}
		if (redisAppendCommandArgv(s->c, nargs + 3, argv, argl) != REDIS_OK)
			io_err(s, what);
		if (s->c->err != 0 || (r = exchange(s, what)) == NULL) {
			drop_connection(s);
			if (!idempotent)
				return NULL;
			continue;
		}
		if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
			/* the server restarted (or SCRIPT FLUSH): nothing ran; load and run again */
			freeReplyObject(r);
			if (load_script(s, id) != 0)
				return NULL;
			continue;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			error_reply(s, what, r);
			return NULL;
		}
		return r;
	}
	set_err(s, "%s: the script could not be loaded", what);
	return NULL;
}

/* ---- small helpers -------------------------------------------------------------------------- */

/* A key: prefix + the formatted rest. Returns 0, or -1 (s->err) if it does not fit. */
static int key(struct redis_store *s, char out[KEY_MAX], const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int key(struct redis_store *s, char out[KEY_MAX], const char *fmt, ...)
{
	size_t n = strlen(s->prefix);
	va_list ap;
	int m;

	memcpy(out, s->prefix, n + 1);
	va_start(ap, fmt);
	m = vsnprintf(out + n, KEY_MAX - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= KEY_MAX - n) {
		set_err(s, "key too long");
		return -1;
	}
	return 0;
}

/* Formatted arguments kept alive for one call. */
struct args {
	const char *v[ARGS_MAX];
	size_t len[ARGS_MAX];
	char buf[ARGS_MAX][32];
	int n;
};

static void arg_str(struct args *a, const char *s)
{
	a->v[a->n] = s;
	a->len[a->n] = strlen(s);
	a->n++;
}

static void arg_int(struct args *a, long long x)
{
	a->len[a->n] = (size_t)snprintf(a->buf[a->n], sizeof a->buf[a->n], "%lld", x);
	a->v[a->n] = a->buf[a->n];
	a->n++;
}

/* The arguments every script that reads the clock begins with (LUA_CLOCK): the caller's clock
 * when it built the call (µs), and whether the store takes it as its own (clock=host). */
static void arg_clock(const struct redis_store *s, struct args *a, int64_t host_us)
{
	arg_int(a, host_us);
	arg_str(a, s->url.clock_host ? "1" : "0");
}

/* What to add to an instant on the store's clock to have it on the caller's: the store read
 * store_now_ms when the caller's clock said host_ms. */
static int64_t to_host(const struct redis_store *s, int64_t store_now_ms, int64_t host_ms)
{
	return s->url.clock_host ? 0 : host_ms - store_now_ms;
}

/* The by-message field: chat ids fold their case (an @username is one chat whatever its case;
 * digits fold to themselves), as the SQLite backend's NOCASE match does. */
static void message_field(const char *chat_key, long long message_id, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s:%lld", chat_key, message_id);
}

/* ---- opening -------------------------------------------------------------------------------- */

/* Read with read(2), not stdio, whose buffer would be freed unwiped. A password of
 * PASSWORD_MAX bytes or more is refused rather than cut. */
#define PASSWORD_MAX 1024
static char *read_password(const char *setting, const char *path, char *err, size_t errlen)
{
	char buf[PASSWORD_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t got = 0;
	char *pw = NULL;

	if (fd < 0) {
		snprintf(err, errlen, "%s %s: %s", setting, path, strerror(errno));
		return NULL;
	}
	while (n < sizeof buf - 1 && ((got = read(fd, buf + n, sizeof buf - 1 - n)) > 0 ||
				      (got < 0 && errno == EINTR)))
		if (got > 0)
			n += (size_t)got;
	if (got < 0)
		snprintf(err, errlen, "%s %s: %s", setting, path, strerror(errno));
	close(fd);
	if (got < 0)
		goto out;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0')
		snprintf(err, errlen, "%s %s: empty", setting, path);
	else if (strlen(buf) >= PASSWORD_MAX)
		snprintf(err, errlen, "%s %s: the password is longer than %d bytes", setting,
			 path, PASSWORD_MAX - 1);
	else if ((pw = strdup(buf)) == NULL)
		snprintf(err, errlen, "out of memory");
out:
	secmem_wipe(buf, sizeof buf);
	return pw;
}

static void redis_store_close(void *h);

/* Connects to the server u names (the password from c->redis_password_file, the prefix from
 * u->prefix, else c->redis_prefix, else "otp:") and loads the scripts. NULL with a reason in err
 * when the settings are wrong; an unreachable server is not a failure here: the handle
 * reconnects (with backoff) on use, and calls fail until it is back. */
static void *redis_store_open(const struct store_url *u, const struct store_config *c, char *err,
			      size_t errlen)
{
	struct redis_store *s = calloc(1, sizeof *s);
	const char *prefix = u->prefix[0] != '\0' ? u->prefix
			     : c->redis_prefix != NULL ? c->redis_prefix : DEFAULT_PREFIX;
	struct sigaction sa;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->url = *u;
	s->lease_ms = c->lease_ms > 0 ? c->lease_ms : DEFAULT_LEASE_MS;
	s->min_replicas = c->redis_min_replicas;
	s->wait_ms = c->redis_wait_ms > 0 ? c->redis_wait_ms : DEFAULT_WAIT_MS;
	if (strlen(prefix) >= sizeof s->prefix) {
		snprintf(err, errlen, "OTP_REDIS_PREFIX: longer than %zu characters",
			 sizeof s->prefix - 1);
		goto fail;
	}
	snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
	if (c->host_name != NULL && c->host_name[0] != '\0')
		snprintf(s->host, sizeof s->host, "%s", c->host_name);
	else if (gethostname(s->host, sizeof s->host) != 0 || s->host[0] == '\0')
		snprintf(s->host, sizeof s->host, "unknown");
	s->host[sizeof s->host - 1] = '\0';
	if (c->redis_password_file != NULL && c->redis_password_file[0] != '\0' &&
	    (s->password = read_password("OTP_REDIS_PASSWORD_FILE", c->redis_password_file, err,
					 errlen)) == NULL)
		goto fail;
	if (u->kind == STORE_REDIS_SENTINEL && c->redis_sentinel_password_file != NULL &&
	    c->redis_sentinel_password_file[0] != '\0' &&
	    (s->sentinel_password = read_password("OTP_REDIS_SENTINEL_PASSWORD_FILE",
						  c->redis_sentinel_password_file, err,
						  errlen)) == NULL)
		goto fail;
	/* hiredis writes with write(2): a server that went away would kill us with SIGPIPE */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	/* unreachable is not a failure here (calls fail until it is back), refused AUTH is */
	if (ensure_connected(s) != 0 && s->c == NULL && strstr(s->err, "AUTH") != NULL) {
		snprintf(err, errlen, "%s", s->err);
		goto fail;
	}
	return s;
fail:
	redis_store_close(s);
	return NULL;
}

static void redis_store_close(void *h)
{
	struct redis_store *s = h;

	if (s == NULL)
		return;
	drop_connection(s);
	if (s->password != NULL) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	if (s->sentinel_password != NULL) {
		explicit_bzero(s->sentinel_password, strlen(s->sentinel_password));
		free(s->sentinel_password);
	}
	free(s);
}

/* No file: nothing to check or to find on tmpfs. */
static int redis_store_check_file(void *h)
{
	(void)h;
	return 0;
}

static int redis_store_is_on_tmpfs(const void *h)
{
	(void)h;
	return -1;
}

/* ---- rate limits and the send queue --------------------------------------------------------- */

static int redis_store_rate_take(void *h, const struct store_rate_rule *rules, int nrules,
				 const struct store_slot_request *slot, int64_t now_ms,
				 struct store_rate_verdict *v)
{
	struct redis_store *s = h;
	char keys[STORE_RATE_RULES_MAX + 4][KEY_MAX], subjects[STORE_RATE_RULES_MAX][KEY_MAX];
	struct args *a = calloc(1, sizeof *a);
	int64_t host_us = slot != NULL ? slot->now_us : now_ms * 1000, store_us, shift_us;
	redisReply *r = NULL;
	const char *why;
	int i, rc = -1;

	memset(v, 0, sizeof *v);
	v->refused_rule = -1;
	if (a == NULL) {
		set_err(s, "out of memory");
		return -1;
	}
	if (nrules > STORE_RATE_RULES_MAX) {
		set_err(s, "too many rate rules (%d)", nrules);
		goto out;
	}
	for (i = 0; i < nrules; i++)
		if (strlen(rules[i].scope) >= STORE_SCOPE_MAX ||
		    strlen(rules[i].subject) >= STORE_SUBJECT_MAX) {
			set_err(s, "take rate events: scope or subject too long");
			goto out;
		}
	for (i = 0; i < nrules; i++)
		if (key(s, keys[i], "rate:%s:%s", rules[i].scope, rules[i].subject) != 0 ||
		    key(s, subjects[i], "rate-subjects:%s", rules[i].scope) != 0)
			goto out;
	if (key(s, keys[nrules], "rate:seq") != 0 || key(s, keys[nrules + 1], "queue:send") != 0 ||
	    key(s, keys[nrules + 2], "pause:%s",
		slot != NULL && slot->pause_kind != NULL ? slot->pause_kind : "none") != 0 ||
	    key(s, keys[nrules + 3], "heartbeat:%s",
		slot != NULL && slot->beat_program != NULL ? slot->beat_program : "none") != 0)
		goto out;
	for (i = 0; i < nrules + 4; i++)
		arg_str(a, keys[i]);
	arg_clock(s, a, host_us);
	arg_int(a, nrules);
	for (i = 0; i < nrules; i++) {
		int64_t ttl = now_ms - rules[i].expired_ms + 1000;

		arg_int(a, rules[i].limit);
		/* on the clock of host_us: the script moves it onto the store's */
		arg_int(a, rules[i].expired_ms + (host_us / 1000 - now_ms));
		arg_int(a, ttl > 1000 ? ttl : 1000);
		arg_str(a, subjects[i]);
		arg_str(a, rules[i].subject);
	}
	arg_str(a, slot != NULL ? "1" : "0");
	arg_int(a, slot != NULL ? slot->spacing_us : 0);
	arg_int(a, slot != NULL ? slot->latest_us : 0);
	arg_str(a, slot != NULL && slot->pause_kind != NULL ? "1" : "0");
	arg_int(a, slot != NULL ? slot->pause_cap_us : 0);
	arg_int(a, slot != NULL ? slot->reset_after_us : 0);
	arg_str(a, slot != NULL && slot->beat_program != NULL ? "1" : "0");
	arg_int(a, slot != NULL ? slot->beat_after_ms + (host_us / 1000 - now_ms) : 0);
	arg_int(a, slot != NULL ? slot->beat_before_ms + (host_us / 1000 - now_ms) : 0);
	r = eval(s, SC_RATE_TAKE, 0, "take rate events", nrules + 4, a->n, a->v, a->len);
	if (r == NULL)
		goto out;
	if (redis_reply_rate_take(r, nrules, v, &store_us, &why) != 0) {
		rc = bad_reply(s, SC_RATE_TAKE, "take rate events", why);
		memset(v, 0, sizeof *v);
		v->refused_rule = -1;
		goto out;
	}
	/* instants answered on the caller's clock; the events' stay as stored (release finds
	 * them by it) */
	shift_us = s->url.clock_host ? 0 : host_us - store_us;
	if (v->beat_refused)
		v->beat_ms += shift_us / 1000;
	else if (v->refused_rule >= 0)
		v->freeing_at_ms += shift_us / 1000;
	else
		v->slot_us += shift_us;
	for (i = 0; i < v->nslots; i++) {
		snprintf(v->slot_events[i].scope, sizeof v->slot_events[i].scope, "%s",
			 rules[i].scope);
		snprintf(v->slot_events[i].subject, sizeof v->slot_events[i].subject, "%s",
			 rules[i].subject);
	}
	rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	free(a);
	return rc;
}

/* An integer reply in [lo, hi] from script id into *out (may be NULL); frees the reply.
 * Returns 0, or -1 as bad_reply(). */
static int int_reply(struct redis_store *s, enum script_id id, const char *what, redisReply *r,
		     long long lo, long long hi, long long *out)
{
	const char *why;
	long long x;
	int rc = 0;

	if (redis_reply_int(r, lo, hi, &x, &why) != 0)
		rc = bad_reply(s, (int)id, what, why);
	else if (out != NULL)
		*out = x;
	freeReplyObject(r);
	return rc;
}

/* The reply {found, instant, now_ms} of script id, the instant moved onto the caller's clock
 * (host_ms when it built the call). Returns 1 (found), 0, or -1 as bad_reply(). */
static int instant_reply(struct redis_store *s, enum script_id id, const char *what,
			 redisReply *r, int64_t host_ms, int64_t *out)
{
	int64_t value, now;
	const char *why;
	int found, rc;

	if (redis_reply_instant(r, &found, &value, &now, &why) != 0) {
		rc = bad_reply(s, (int)id, what, why);
	} else {
		if (found)
			*out = value + to_host(s, now, host_ms);
		rc = found;
	}
	freeReplyObject(r);
	return rc;
}

static int redis_store_rate_release(void *h, const struct store_rate_verdict *v)
{
	struct redis_store *s = h;
	char list[KEY_MAX], subjects[KEY_MAX], member[48];
	int i;

	for (i = 0; i < v->nslots; i++) {
		const struct store_rate_event *e = &v->slot_events[i];
		struct args a = { .n = 0 };
		redisReply *r;

		if (key(s, list, "rate:%s:%s", e->scope, e->subject) != 0 ||
		    key(s, subjects, "rate-subjects:%s", e->scope) != 0)
			return -1;
		/* the member as the take script wrote it */
		snprintf(member, sizeof member, "%lld:%lld", (long long)e->at_ms,
			 (long long)v->slot_ids[i]);
		arg_str(&a, list);
		arg_str(&a, subjects);
		arg_str(&a, member);
		arg_str(&a, e->subject);
		/* removing an event twice removes nothing the second time: retried like a read */
		if ((r = eval(s, SC_RATE_RELEASE, 1, "release rate event", 2, a.n, a.v, a.len)) ==
			    NULL ||
		    int_reply(s, SC_RATE_RELEASE, "release rate event", r, 0, 0, NULL) != 0)
			return -1;
	}
	return 0;
}

/* Subjects whose oldest event expired, from the scope's sorted set (P rate-subjects:<scope>),
 * a bounded batch per script run so that Redis is never blocked for long. Each list also
 * expires on its own (PEXPIRE), should no otp-deleter sweep. */
static int redis_store_rate_prune(void *h, const char *scope, int64_t expired_ms)
{
	struct redis_store *s = h;
	char ksub[KEY_MAX], klist[KEY_MAX];
	int64_t host_ms = clock_now_ms();
	long long n = 0;
	int total = 0;

	if (key(s, ksub, "rate-subjects:%s", scope) != 0 || key(s, klist, "rate:%s:", scope) != 0)
		return -1;
	do {
		struct args a = { .n = 0 };
		redisReply *r;

		arg_str(&a, ksub);
		arg_clock(s, &a, host_ms * 1000);
		arg_str(&a, klist);
		arg_int(&a, expired_ms);
		arg_int(&a, 1000);
		if ((r = eval(s, SC_RATE_PRUNE, 1, "prune rate events", 1, a.n, a.v, a.len)) == NULL ||
		    int_reply(s, SC_RATE_PRUNE, "prune rate events", r, 0, INT_MAX - total, &n) != 0)
			return -1;
		total += (int)n;
	} while (n >= 1000);
	return total;
}

static long long redis_store_rate_count(void *h, const char *scope, const char *subject)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	const char *argv[2] = { "LLEN", k }, *why;
	size_t lens[2] = { 4, 0 };
	redisReply *r;
	long long n = -1;

	if (key(s, k, "rate:%s:%s", scope, subject) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "count rate events", 2, argv, lens)) == NULL)
		return -1;
	if (redis_reply_int(r, 0, REDIS_REPLY_NUMBER_MAX, &n, &why) != 0)
		n = bad_reply(s, CALL_LLEN, "count rate events", why);
	freeReplyObject(r);
	return n;
}

long store_primary_changes_take(void)
{
	return redis_sentinel_changes_take();
}

/* ---- pending deletions ---------------------------------------------------------------------- */

/* The primary's replicas now, whatever their state, into s->replicas (INFO replication's
 * connected_slaves: ROLE lists only those streaming already, and one still in its first sync
 * can be promoted without what it has not received yet). Returns 0, or -1 (s->err). */
static int count_replicas(struct redis_store *s)
{
	const char *argv[2] = { "INFO", "replication" }, *why;
	size_t lens[2] = { 4, 11 };
	redisReply *r = command(s, "INFO replication", 2, argv, lens);
	int n, rc = 0;

	if (r == NULL)
		return -1;
	if (redis_sentinel_reply_info_replicas(r, &n, &why) != 0)
		rc = bad_reply(s, CALL_INFO, "INFO replication", why);
	else
		s->replicas = n;
	freeReplyObject(r);
	return rc;
}

/* How many replicas must hold the pending row just written before it counts: the setting, or
 * by default 1 if the primary has a replica now (asked on the connection that wrote: a replica
 * that joined since could be promoted, and must hold the row). Returns the number, or -1 with
 * the reason in s->err. */
static int replicas_needed(struct redis_store *s)
{
	if (s->min_replicas >= 0)
		return s->min_replicas;
	if (count_replicas(s) != 0)
		return -1;
	/* no replica: they died, or one was promoted while this primary was frozen (a connection
	 * made to it then, on the sentinels' word of before, answers once it thaws). Only the
	 * sentinels tell: if they name another primary, what is written here is lost at its
	 * demotion */
	if (s->replicas == 0 && check_still_named(s) != 0) {
		drop_connection(s);
		return -1;
	}
	return s->replicas > 0 ? 1 : 0;
}

/* WAIT on the connection that just wrote: every write of it held by n replicas within wait_ms.
 * Returns 0, or -1 with the reason in s->err. With Sentinel a shortfall also drops the
 * connection: a primary its replicas no longer follow may have been replaced. */
static int wait_replicas(struct redis_store *s, int n)
{
	char nb[16], tb[16];
	const char *argv[3] = { "WAIT", nb, tb }, *why;
	size_t lens[3] = { 4, 0, 0 };
	redisReply *r;
	long long got;
	int rc = -1;

	lens[1] = (size_t)snprintf(nb, sizeof nb, "%d", n);
	lens[2] = (size_t)snprintf(tb, sizeof tb, "%d", s->wait_ms);
	if ((r = command(s, "WAIT", 3, argv, lens)) == NULL)
		return -1;
	if (redis_reply_int(r, 0, REDIS_REPLY_ELEMENTS_MAX, &got, &why) != 0) {
		rc = bad_reply(s, CALL_WAIT, "WAIT", why);
	} else if (got < n) {
		set_err(s, "the pending row reached %lld of the %d replica(s) it needs within %d ms",
			got, n, s->wait_ms);
		if (s->url.kind == STORE_REDIS_SENTINEL)
			drop_connection(s);
	} else {
		rc = 0;
	}
	freeReplyObject(r);
	return rc;
}

/* Writes one pending row (the script), not yet waiting for replicas. Returns 0, or -1 with
 * the reason in s->err. */
static int write_row(struct redis_store *s, const struct pending_ref *ref, int64_t delete_at_ms,
		     int64_t *stored_ms)
{
	char kseq[KEY_MAX], kdue[KEY_MAX], kidx[KEY_MAX], field[STORE_CHAT_ID_MAX + 24];
	struct args a = { .n = 0 };
	redisReply *r;
	long long id, at;
	const char *why;
	int rc = 0;

	if (key(s, kseq, "pending:seq") != 0 || key(s, kdue, "pending:due") != 0 ||
	    key(s, kidx, "pending:by-message") != 0)
		return -1;
	message_field(ref->chat_key, ref->message_id, field, sizeof field);
	arg_str(&a, kseq);
	arg_str(&a, kdue);
	arg_str(&a, kidx);
	arg_clock(s, &a, clock_now_us());
	arg_str(&a, s->prefix);
	arg_str(&a, ref->chat_id);
	arg_int(&a, ref->message_id);
	arg_int(&a, delete_at_ms);
	arg_str(&a, field);
	arg_str(&a, ref->chat_key);
	arg_str(&a, ref->owner != NULL ? ref->owner : "");
	if ((r = eval(s, SC_PENDING_ADD, 0, "add pending deletion", 3, a.n, a.v, a.len)) == NULL)
		return -1;
	if (redis_reply_array(r, 2, 2, &why) != 0 ||
	    redis_reply_int(r->element[0], 1, REDIS_REPLY_NUMBER_MAX, &id, &why) != 0 ||
	    redis_reply_int(r->element[1], 0, REDIS_REPLY_NUMBER_MAX, &at, &why) != 0)
		rc = bad_reply(s, SC_PENDING_ADD, "add pending deletion", why);
	else if (stored_ms != NULL)
		*stored_ms = at;
	freeReplyObject(r);
	return rc;
}

/* The rows this connection wrote count once enough replicas hold them too (a failover then
 * keeps them): one WAIT covers every write of the connection. Otherwise the callers withdraw
 * their messages, and the rows left behind are deleted as "not found". Returns 0, or -1 with
 * the reason in s->err. */
static int rows_held(struct redis_store *s)
{
	int need;

	if (s->min_replicas == 0)
		return 0;
	if (s->c == NULL || s->c->err != 0)
		return -1; /* lost after the rows (s->err says why): nothing to ask any more */
	need = replicas_needed(s);
	return need <= 0 ? need : wait_replicas(s, need);
}

static int redis_store_pending_add(void *h, const struct pending_ref *ref,
				   int64_t delete_at_ms, int64_t *stored_ms)
{
	struct redis_store *s = h;

	return write_row(s, ref, delete_at_ms, stored_ms) == 0 ? rows_held(s) : -1;
}

/* A script call per row (Redis's commands cost no commit to share, and one row's failure, a
 * lost connection, is its own), then one wait for the replicas for all of them. Rows written on
 * a connection lost before that wait cannot be asked about any more: they count as failed. */
static int redis_store_pending_add_many(void *h, struct store_pending_row *rows, int n)
{
	struct redis_store *s = h;
	uint64_t conn = 0;
	int i, since = 0, written = 0, failed = 0;

	for (i = 0; i < n; i++) {
		rows[i].failed = write_row(s, &rows[i].ref, rows[i].delete_at_ms,
					   &rows[i].stored_ms) != 0;
		if (!rows[i].failed && s->connection != conn) {
			conn = s->connection; /* a new connection: the earlier rows were not on it */
			since = i;
		}
		written += !rows[i].failed;
	}
	for (i = 0; i < n && written > 0; i++)
		if (!rows[i].failed && i < since && s->min_replicas != 0)
			rows[i].failed = 1;
	if (written > 0 && rows_held(s) != 0)
		for (i = since; i < n; i++)
			rows[i].failed = 1;
	for (i = 0; i < n; i++)
		failed += rows[i].failed;
	return failed;
}

/* Rows answered on the caller's clock: shift added to each instant. */
static void rows_to_host(struct pending *p, int n, int64_t shift)
{
	int i;

	for (i = 0; i < n; i++) {
		p[i].delete_at_ms += shift;
		p[i].next_try_ms += shift;
	}
}

static int redis_store_pending_due(void *h, int64_t now_ms, struct pending *out, int max)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX];
	struct args a = { .n = 0 };
	/* with the host's clock (clock=host) the caller's now is the clock */
	int64_t host_ms = s->url.clock_host ? now_ms : clock_now_ms();
	redisReply *r;
	const char *why;
	int64_t store_now;
	int n = 0;

	if (max <= 0)
		return 0;
	if (key(s, kdue, "pending:due") != 0)
		return -1;
	arg_str(&a, kdue);
	arg_clock(s, &a, host_ms * 1000);
	arg_str(&a, s->prefix);
	arg_int(&a, max);
	arg_int(&a, s->lease_ms);
	/* a caller that asks for rows due by an instant ahead of now (a stop that cannot wait for
	 * them) gets them: how far ahead, measured on its own clock, is added to the store's */
	arg_int(&a, now_ms > host_ms ? now_ms - host_ms : 0);
	if ((r = eval(s, SC_PENDING_DUE, 0, "claim due deletions", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	if (redis_reply_pending_due(r, max, out, &n, &store_now, &why) != 0)
		n = bad_reply(s, SC_PENDING_DUE, "claim due deletions", why);
	else
		rows_to_host(out, n, to_host(s, store_now, host_ms));
	freeReplyObject(r);
	return n;
}

static int redis_store_pending_next(void *h, int64_t *next_ms)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX];
	struct args a = { .n = 0 };
	int64_t host_ms = clock_now_ms();
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	arg_str(&a, kdue);
	arg_clock(s, &a, host_ms * 1000);
	if ((r = eval(s, SC_PENDING_NEXT, 1, "read next deletion", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return instant_reply(s, SC_PENDING_NEXT, "read next deletion", r, host_ms, next_ms);
}

static int redis_store_pending_last(void *h, int64_t *last_ms)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX];
	struct args a = { .n = 0 };
	int64_t host_ms = clock_now_ms();
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	arg_str(&a, kdue);
	arg_clock(s, &a, host_ms * 1000);
	if ((r = eval(s, SC_PENDING_LAST, 1, "read last deletion", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return instant_reply(s, SC_PENDING_LAST, "read last deletion", r, host_ms, last_ms);
}

static long long redis_store_pending_count(void *h)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX];
	const char *argv[2] = { "ZCARD", kdue }, *why;
	size_t lens[2] = { 5, 0 };
	redisReply *r;
	long long n = -1;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	lens[1] = strlen(kdue);
	if ((r = run(s, 1, "count pending deletions", 2, argv, lens)) == NULL)
		return -1;
	if (redis_reply_int(r, 0, REDIS_REPLY_NUMBER_MAX, &n, &why) != 0)
		n = bad_reply(s, CALL_ZCARD, "count pending deletions", why);
	freeReplyObject(r);
	return n;
}

static int redis_store_pending_remove_many(void *h, const int64_t *ids, int n)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX], kidx[KEY_MAX];
	struct args *a;
	redisReply *r;
	int i, done, chunk, rc = 0;

	if (n <= 0)
		return 0;
	if (key(s, kdue, "pending:due") != 0 || key(s, kidx, "pending:by-message") != 0 ||
	    (a = calloc(1, sizeof *a)) == NULL)
		return -1;
	for (done = 0; done < n && rc == 0; done += chunk) {
		chunk = n - done < 64 ? n - done : 64;
		a->n = 0;
		arg_str(a, kdue);
		arg_str(a, kidx);
		arg_str(a, s->prefix);
		for (i = 0; i < chunk; i++)
			arg_int(a, ids[done + i]);
		/* removing twice is harmless: retried like a read */
		r = eval(s, SC_PENDING_REMOVE, 1, "remove pending deletion", 2, a->n, a->v, a->len);
		if (r == NULL ||
		    int_reply(s, SC_PENDING_REMOVE, "remove pending deletion", r, 0, 0, NULL) != 0)
			rc = -1;
	}
	free(a);
	return rc;
}

static int redis_store_pending_remove(void *h, int64_t id)
{
	return redis_store_pending_remove_many(h, &id, 1);
}

static int redis_store_pending_retry(void *h, int64_t id, int64_t next_try_ms)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX], krow[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0 || key(s, krow, "pending:%lld", (long long)id) != 0)
		return -1;
	arg_str(&a, kdue);
	arg_str(&a, krow);
	arg_clock(s, &a, clock_now_us());
	arg_int(&a, id);
	arg_int(&a, next_try_ms);
	if ((r = eval(s, SC_PENDING_RETRY, 0, "record retry", 2, a.n, a.v, a.len)) == NULL)
		return -1;
	return int_reply(s, SC_PENDING_RETRY, "record retry", r, 0, 1, NULL);
}

static int redis_store_pending_claim(void *h, const struct pending_ref *ref,
				     const struct store_claim_request *req, struct pending *out)
{
	struct redis_store *s = h;
	char kidx[KEY_MAX], kdue[KEY_MAX], field[STORE_CHAT_ID_MAX + 24];
	struct args a = { .n = 0 };
	int64_t host_ms = req->now_ms, store_now;
	redisReply *r;
	const char *why;
	int claim;

	if (key(s, kidx, "pending:by-message") != 0 || key(s, kdue, "pending:due") != 0)
		return -1;
	message_field(ref->chat_key, ref->message_id, field, sizeof field);
	arg_str(&a, kidx);
	arg_str(&a, kdue);
	arg_clock(s, &a, host_ms * 1000);
	arg_str(&a, s->prefix);
	arg_str(&a, field);
	arg_int(&a, req->lease_ms);
	arg_int(&a, req->margin_ms);
	arg_str(&a, ref->owner != NULL ? ref->owner : "");
	if ((r = eval(s, SC_PENDING_CLAIM, 0, "claim pending deletion", 2, a.n, a.v, a.len)) == NULL)
		return -1;
	if (redis_reply_claim(r, &claim, out, &store_now, &why) != 0)
		claim = bad_reply(s, SC_PENDING_CLAIM, "claim pending deletion", why);
	else if (claim != STORE_CLAIM_NONE)
		rows_to_host(out, 1, to_host(s, store_now, host_ms));
	freeReplyObject(r);
	return claim;
}

static int redis_store_pending_release(void *h, int64_t id, int64_t now_ms)
{
	struct redis_store *s = h;
	char kdue[KEY_MAX], krow[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0 || key(s, krow, "pending:%lld", (long long)id) != 0)
		return -1;
	arg_str(&a, kdue);
	arg_str(&a, krow);
	arg_clock(s, &a, now_ms * 1000);
	arg_int(&a, id);
	if ((r = eval(s, SC_PENDING_RELEASE, 1, "release pending deletion", 2, a.n, a.v, a.len)) ==
	    NULL)
		return -1;
	return int_reply(s, SC_PENDING_RELEASE, "release pending deletion", r, 0, 0, NULL);
}

/* ---- pauses, heartbeats, metrics ------------------------------------------------------------ */

static int redis_store_pause_extend(void *h, const char *kind, int64_t until_ms,
				    const char *program)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, k, "pause:%s", kind) != 0)
		return -1;
	arg_str(&a, k);
	arg_clock(s, &a, clock_now_us());
	arg_int(&a, until_ms);
	arg_str(&a, program);
	if ((r = eval(s, SC_PAUSE_EXTEND, 1, "record Telegram's pause", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return int_reply(s, SC_PAUSE_EXTEND, "record Telegram's pause", r, 0, 0, NULL);
}

static int redis_store_pause_get(void *h, const char *kind, int64_t *until_ms)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	int64_t host_ms = clock_now_ms();
	redisReply *r;

	if (key(s, k, "pause:%s", kind) != 0)
		return -1;
	arg_str(&a, k);
	arg_clock(s, &a, host_ms * 1000);
	if ((r = eval(s, SC_PAUSE_GET, 1, "read Telegram's pause", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return instant_reply(s, SC_PAUSE_GET, "read Telegram's pause", r, host_ms, until_ms);
}

static int redis_store_heartbeat_set(void *h, const char *program, int64_t now_ms)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, k, "heartbeat:%s", program) != 0)
		return -1;
	arg_str(&a, k);
	/* the beat is the store's now; now_ms counts only with clock=host */
	arg_clock(s, &a, now_ms * 1000);
	/* writing the store's now twice is harmless, so it is retried like a read */
	if ((r = eval(s, SC_HEARTBEAT_SET, 1, "write heartbeat", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return int_reply(s, SC_HEARTBEAT_SET, "write heartbeat", r, 0, 0, NULL);
}

static int redis_store_heartbeat_get(void *h, const char *program, int64_t *beat_ms)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	int64_t host_ms = clock_now_ms();
	redisReply *r;

	if (key(s, k, "heartbeat:%s", program) != 0)
		return -1;
	arg_str(&a, k);
	arg_clock(s, &a, host_ms * 1000);
	if ((r = eval(s, SC_HEARTBEAT_GET, 1, "read heartbeat", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	return instant_reply(s, SC_HEARTBEAT_GET, "read heartbeat", r, host_ms, beat_ms);
}

/* Metrics stay per host (P metrics:<host>): each host's /metrics answers its own totals, so
 * Prometheus scraping every host sums them without counting anything twice. */
static int redis_store_metrics_add(void *h, const struct store_metric *d, int n,
				   int *added)
{
	struct redis_store *s = h;
	char k[KEY_MAX];
	struct args *a;
	char (*fields)[256]; /* name (64) + labels (160), as metrics.c bounds them */
	redisReply *r;
	int i, done, chunk, rc = 0;

	if (n <= 0)
		return 0;
	if (key(s, k, "metrics:%s", s->host) != 0)
		return -1;
	a = calloc(1, sizeof *a);
	fields = calloc(64, sizeof *fields);
	if (a == NULL || fields == NULL) {
		set_err(s, "out of memory");
		rc = -1;
	}
	for (done = 0; rc == 0 && done < n; done += chunk) {
		chunk = n - done < 64 ? n - done : 64;
		a->n = 0;
		arg_str(a, k);
		for (i = 0; i < chunk; i++) {
			const struct store_metric *m = &d[done + i];

			if ((size_t)snprintf(fields[i], sizeof fields[i], "%s{%s}", m->name,
					     m->labels) >= sizeof fields[i]) {
				set_err(s, "metric %.64s: labels too long", m->name);
				rc = -1;
				break;
			}
			arg_str(a, fields[i]);
			a->len[a->n] = (size_t)snprintf(a->buf[a->n], sizeof a->buf[a->n], "%.17g",
							m->value);
			a->v[a->n] = a->buf[a->n];
			a->n++;
		}
		if (rc != 0)
			break;
		r = eval(s, SC_METRICS_ADD, 0, "add to metrics", 1, a->n, a->v, a->len);
		if (r == NULL || int_reply(s, SC_METRICS_ADD, "add to metrics", r, 0, 0, NULL) != 0) {
			rc = -1;
			break;
		}
		*added = done + chunk;
	}
	free(fields);
	free(a);
	return rc;
}

static int redis_store_metrics_read(void *h,
				    void (*fn)(void *ctx, const struct store_metric *m), void *ctx)
{
	struct redis_store *s = h;
	char k[KEY_MAX], name[256];
	const char *argv[2] = { "HGETALL", k }, *why = NULL, *field;
	size_t lens[2] = { 7, 0 }, i;
	redisReply *r;
	int rc = 0;

	if (key(s, k, "metrics:%s", s->host) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "read metrics", 2, argv, lens)) == NULL)
		return -1;
	if (redis_reply_array(r, 0, REDIS_REPLY_ELEMENTS_MAX, &why) != 0 || r->elements % 2 != 0) {
		rc = bad_reply(s, CALL_HGETALL, "read metrics", why != NULL ? why : "odd length");
		goto out;
	}
	for (i = 0; i < r->elements; i += 2) {
		struct store_metric m;
		char *brace, *end;

		if (redis_reply_metric(r, i, &field, &m.value, &why) != 0) {
			rc = bad_reply(s, CALL_HGETALL, "read metrics", why);
			goto out;
		}
		snprintf(name, sizeof name, "%s", field);
		brace = strchr(name, '{');
		end = strrchr(name, '}');
		if (brace == NULL || end == NULL || end < brace || end[1] != '\0')
			continue; /* not ours */
		*brace = '\0';
		*end = '\0';
		m.name = name;
		m.labels = brace + 1;
		fn(ctx, &m);
	}
out:
	freeReplyObject(r);
	return rc;
}

const struct store_ops redis_store_ops = {
	.shared_by_hosts = 1,
	.open = redis_store_open,
	.close = redis_store_close,
	.strerror = redis_store_strerror,
	.check_file = redis_store_check_file,
	.is_on_tmpfs = redis_store_is_on_tmpfs,
	.rate_take = redis_store_rate_take,
	.rate_release = redis_store_rate_release,
	.rate_prune = redis_store_rate_prune,
	.rate_count = redis_store_rate_count,
	.pending_add = redis_store_pending_add,
	.pending_add_many = redis_store_pending_add_many,
	.pending_due = redis_store_pending_due,
	.pending_next = redis_store_pending_next,
	.pending_last = redis_store_pending_last,
	.pending_count = redis_store_pending_count,
	.pending_remove = redis_store_pending_remove,
	.pending_retry = redis_store_pending_retry,
	.pending_remove_many = redis_store_pending_remove_many,
	.pending_claim = redis_store_pending_claim,
	.pending_release = redis_store_pending_release,
	.pause_extend = redis_store_pause_extend,
	.pause_get = redis_store_pause_get,
	.metrics_add = redis_store_metrics_add,
	.metrics_read = redis_store_metrics_read,
	.heartbeat_set = redis_store_heartbeat_set,
	.heartbeat_get = redis_store_heartbeat_get,
};
