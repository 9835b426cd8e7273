/* store_redis.c — the Redis backend of store.h (see store_backend.h), for deployments where
 * several hosts share the pending deletions, the limits, the send queue, the pauses and the
 * heartbeat. The only file that includes hiredis.h.
 *
 * Key layout (P = the prefix, "otp:" by default; README "Redis" shows them with redis-cli):
 *   P pending:due          sorted set: pending id -> next try (ms); due when score <= now
 *   P pending:<id>         hash: chat_id, message_id, delete_at_ms, attempts, created_at_ms
 *   P pending:by-message   hash: "<chat_id lowercased>:<message_id>" -> id (POST /revoke-otp)
 *   P pending:seq          counter of pending ids
 *   P rate:<scope>:<subj>  list of counted events "<at_ms>:<id>", newest first; expires with
 *                          its window
 *   P rate:seq             counter of event ids
 *   P queue:send           the send queue's next free instant (µs)
 *   P pause:<kind>         hash: until_ms, set_by (Telegram's 429 on "send" or "delete")
 *   P heartbeat:<program>  the latest beat (ms) of any instance of program, on any host
 *   P metrics:<host>       hash: "<name>{<labels>}" -> total of that host's processes
 * Nothing else: no OTP, no message text.
 *
 * Every update touching more than one key is one Lua script (atomic), loaded once per
 * connection with SCRIPT LOAD and run with EVALSHA (loaded again after NOSCRIPT: a restarted
 * server forgets them). A lost connection is reopened on use, at most once per backoff step
 * (100 ms doubling to 2 s); meanwhile calls fail at once. The first failure of an outage and
 * the recovery are logged once per process. Reads are retried once on a fresh connection;
 * writes are not (a write whose answer was lost may have happened). */
#define _GNU_SOURCE
#include "store_backend.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
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
#include "secmem.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 2000
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define DEFAULT_LEASE_MS 30000
#define DEFAULT_PREFIX "otp:"
#define KEY_MAX 256
#define ARGS_MAX (8 + 5 * STORE_RATE_RULES_MAX + 2 * 64)

/* ---- the scripts ------------------------------------------------------------------------- */

/* Lua numbers are doubles: integers up to 2^53 are exact (ms and µs since the epoch are far
 * below); '%.0f' writes them without an exponent. */
#define LUA_AT "local function at_of(e) return tonumber(string.match(e, '^(%-?%d+)')) end\n"
/* Drops a subject's events at or before expired (the oldest are at the tail: O(1) each) and
 * files the subject in its scope's sorted set under its oldest event, or takes it out. */
#define LUA_TRIM                                                                                   \
	"local function trim(key, expired, subjects, subject)\n"                                   \
	"  local dropped = 0\n"                                                                    \
	"  while true do\n"                                                                        \
	"    local last = redis.call('LINDEX', key, -1)\n"                                         \
	"    if not last then redis.call('ZREM', subjects, subject); return dropped end\n"         \
	"    if at_of(last) > expired then\n"                                                      \
	"      redis.call('ZADD', subjects, at_of(last), subject); return dropped\n"               \
	"    end\n"                                                                                \
	"    redis.call('RPOP', key)\n"                                                            \
	"    dropped = dropped + 1\n"                                                              \
	"  end\n"                                                                                  \
	"end\n"

enum script_id {
	SC_RATE_TAKE,
	SC_RATE_RELEASE,
	SC_RATE_PRUNE,
	SC_PENDING_ADD,
	SC_PENDING_DUE,
	SC_PENDING_REMOVE,
	SC_PENDING_RETRY,
	SC_PENDING_CLAIM,
	SC_PENDING_RELEASE,
	SC_PAUSE_EXTEND,
	SC_HEARTBEAT_SET,
	SC_METRICS_ADD,
	SC_COUNT_
};

static const char *const script_src[SC_COUNT_] = {
	/* KEYS: rule keys 1..n, n+1 event counter, n+2 send queue, n+3 pause (or absent)
	 * ARGV: n, now_ms, per rule (limit, expired_ms, ttl_ms, subjects key, subject), then
	 * has_slot, now_us, spacing_us, latest_us, has_pause, pause_cap_us.
	 * Returns {refused rule (1-based) or -1, freeing_at_ms, slot_refused, slot_paused,
	 * slot_us, id1, at1, id2, at2, ...} */
	[SC_RATE_TAKE] = LUA_AT LUA_TRIM
		"local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
		"for i = 1, n do\n"
		"  local b = 5 * i - 2\n"
		"  local key, limit = KEYS[i], tonumber(ARGV[b])\n"
		"  trim(key, tonumber(ARGV[b+1]), ARGV[b+3], ARGV[b+4])\n"
		"  local count = redis.call('LLEN', key)\n"
		"  if count >= limit then\n"
		"    local e = redis.call('LINDEX', key, limit - count - 1)\n"
		"    return {i, e and at_of(e) or now, 0, 0, 0}\n"
		"  end\n"
		"end\n"
		"local a = 5 * n + 3\n"
		"local slot, paused = 0, 0\n"
		"if ARGV[a] == '1' then\n"
		"  local now_us, spacing, latest = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]),\n"
		"                                  tonumber(ARGV[a+3])\n"
		"  local nxt = tonumber(redis.call('GET', KEYS[n+2]) or now_us)\n"
		/* further ahead than any reservation could put it: a clock stepped back */
		"  if nxt > latest + spacing then nxt = now_us end\n"
		"  slot = math.max(nxt, now_us)\n"
		"  if ARGV[a+4] == '1' then\n"
		"    local p = tonumber(redis.call('HGET', KEYS[n+3], 'until_ms') or 0) * 1000\n"
		"    p = math.min(p, tonumber(ARGV[a+5]))\n"
		"    if p > slot then slot = p; paused = 1 end\n"
		"  end\n"
		"  if slot > latest then return {-1, 0, 1, paused, slot} end\n"
		"  redis.call('SET', KEYS[n+2], string.format('%.0f', slot + spacing))\n"
		"end\n"
		"local out = {-1, 0, 0, paused, slot}\n"
		"for i = 1, n do\n"
		"  local b = 5 * i - 2\n"
		"  local key, at = KEYS[i], now\n"
		/* never older than the newest: the list stays sorted whatever the hosts' clocks */
		"  local head = redis.call('LINDEX', key, 0)\n"
		"  if head and at_of(head) > at then at = at_of(head) end\n"
		"  local id = redis.call('INCR', KEYS[n+1])\n"
		"  if redis.call('LPUSH', key, string.format('%.0f:%d', at, id)) == 1 then\n"
		"    redis.call('ZADD', ARGV[b+3], at, ARGV[b+4])\n"
		"  end\n"
		"  redis.call('PEXPIRE', key, ARGV[b+2])\n"
		"  out[#out+1] = id\n"
		"  out[#out+1] = at\n"
		"end\n"
		"return out\n",

	/* KEYS: list, subjects; ARGV: member, subject */
	[SC_RATE_RELEASE] = LUA_AT
		"redis.call('LREM', KEYS[1], 1, ARGV[1])\n"
		"local last = redis.call('LINDEX', KEYS[1], -1)\n"
		"if last then redis.call('ZADD', KEYS[2], at_of(last), ARGV[2])\n"
		"else redis.call('ZREM', KEYS[2], ARGV[2]) end\n"
		"return 0\n",

	/* KEYS: subjects; ARGV: list key prefix, expired_ms, max subjects. Returns the number of
	 * events dropped. */
	[SC_RATE_PRUNE] = LUA_AT LUA_TRIM
		"local expired = tonumber(ARGV[2])\n"
		"local dropped = 0\n"
		"for _, sub in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', expired,\n"
		"                                'LIMIT', 0, tonumber(ARGV[3]))) do\n"
		"  dropped = dropped + trim(ARGV[1] .. sub, expired, KEYS[1], sub)\n"
		"end\n"
		"return dropped\n",

	/* KEYS: counter, due, by-message; ARGV: prefix, chat_id, message_id, delete_at_ms,
	 * created_at_ms, by-message field. Returns the id. */
	[SC_PENDING_ADD] =
		"local id = redis.call('INCR', KEYS[1])\n"
		"redis.call('HSET', ARGV[1] .. 'pending:' .. id, 'chat_id', ARGV[2], 'message_id',\n"
		"           ARGV[3], 'delete_at_ms', ARGV[4], 'attempts', 0, 'created_at_ms', ARGV[5])\n"
		"redis.call('ZADD', KEYS[2], ARGV[4], id)\n"
		"redis.call('HSET', KEYS[3], ARGV[6], id)\n"
		"return id\n",

	/* KEYS: due; ARGV: prefix, now_ms, max, lease end. Claims and returns the due rows:
	 * {{id, chat_id, message_id, delete_at_ms, next_try_ms, attempts}, ...} */
	[SC_PENDING_DUE] =
		"local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES',\n"
		"                       'LIMIT', 0, tonumber(ARGV[3]))\n"
		"local out = {}\n"
		"for i = 1, #due, 2 do\n"
		"  local id = due[i]\n"
		"  local h = redis.call('HMGET', ARGV[1] .. 'pending:' .. id, 'chat_id',\n"
		"                       'message_id', 'delete_at_ms', 'attempts')\n"
		"  if h[1] then\n"
		"    redis.call('ZADD', KEYS[1], ARGV[4], id)\n"
		"    out[#out+1] = {tonumber(id), h[1], tonumber(h[2]), tonumber(h[3]),\n"
		"                   tonumber(due[i+1]), tonumber(h[4])}\n"
		"  else\n"
		"    redis.call('ZREM', KEYS[1], id)\n"
		"  end\n"
		"end\n"
		"return out\n",

	/* KEYS: due, by-message; ARGV: prefix, id... */
	[SC_PENDING_REMOVE] =
		"for i = 2, #ARGV do\n"
		"  local key = ARGV[1] .. 'pending:' .. ARGV[i]\n"
		"  local h = redis.call('HMGET', key, 'chat_id', 'message_id')\n"
		"  if h[1] then\n"
		"    local f = string.lower(h[1]) .. ':' .. h[2]\n"
		"    if redis.call('HGET', KEYS[2], f) == ARGV[i] then redis.call('HDEL', KEYS[2], f) end\n"
		"  end\n"
		"  redis.call('DEL', key)\n"
		"  redis.call('ZREM', KEYS[1], ARGV[i])\n"
		"end\n"
		"return 0\n",

	/* KEYS: due, row; ARGV: id, next_try_ms */
	[SC_PENDING_RETRY] =
		"local da = redis.call('HGET', KEYS[2], 'delete_at_ms')\n"
		"if not da then return 0 end\n"
		"redis.call('HINCRBY', KEYS[2], 'attempts', 1)\n"
		"redis.call('ZADD', KEYS[1], math.max(tonumber(ARGV[2]), tonumber(da)), ARGV[1])\n"
		"return 1\n",

	/* KEYS: by-message, due; ARGV: prefix, field, now_ms, lease_ms, margin_ms.
	 * Returns {claim, id, chat_id, message_id, delete_at_ms, next_try_ms, attempts}. */
	[SC_PENDING_CLAIM] =
		"local id = redis.call('HGET', KEYS[1], ARGV[2])\n"
		"if not id then return {0} end\n"
		"local row = ARGV[1] .. 'pending:' .. id\n"
		"local h = redis.call('HMGET', row, 'chat_id', 'message_id', 'delete_at_ms', 'attempts')\n"
		"local score = redis.call('ZSCORE', KEYS[2], id)\n"
		"if not h[1] or not score then return {0} end\n"
		"local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
		"local da = tonumber(h[3])\n"
		"if da <= now + tonumber(ARGV[5]) then\n"
		"  return {1, tonumber(id), h[1], tonumber(h[2]), da, tonumber(score), tonumber(h[4])}\n"
		"end\n"
		"redis.call('HSET', row, 'delete_at_ms', ARGV[3])\n"
		"redis.call('ZADD', KEYS[2], now + lease, id)\n"
		"return {2, tonumber(id), h[1], tonumber(h[2]), now, now + lease, tonumber(h[4])}\n",

	/* KEYS: due, row; ARGV: id, now_ms. Due at max(now, delete_at) if it is later now. */
	[SC_PENDING_RELEASE] =
		"local score = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
		"local da = redis.call('HGET', KEYS[2], 'delete_at_ms')\n"
		"local now = tonumber(ARGV[2])\n"
		"if score and da and tonumber(score) > now then\n"
		"  redis.call('ZADD', KEYS[1], math.max(now, tonumber(da)), ARGV[1])\n"
		"end\n"
		"return 0\n",

	/* KEYS: pause; ARGV: until_ms, program. Later, never earlier. */
	[SC_PAUSE_EXTEND] =
		"local cur = redis.call('HGET', KEYS[1], 'until_ms')\n"
		"if not cur or tonumber(cur) < tonumber(ARGV[1]) then\n"
		"  redis.call('HSET', KEYS[1], 'until_ms', ARGV[1], 'set_by', ARGV[2])\n"
		"end\n"
		"return 0\n",

	/* KEYS: heartbeat; ARGV: beat_ms. The latest beat of any instance wins. */
	[SC_HEARTBEAT_SET] =
		"local cur = redis.call('GET', KEYS[1])\n"
		"if not cur or tonumber(cur) < tonumber(ARGV[1]) then\n"
		"  redis.call('SET', KEYS[1], ARGV[1])\n"
		"end\n"
		"return 0\n",

	/* KEYS: metrics hash; ARGV: field, delta, field, delta, ... */
	[SC_METRICS_ADD] = /* parenthesised: clang's -Wstring-concatenation */
		("for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i+1]) end\n"
		 "return 0\n"),
};

/* ---- the handle ---------------------------------------------------------------------------- */

struct redis_store {
	redisContext *c;
	struct store_url url;
	char *password;               /* wiped and freed on close */
	char prefix[STORE_URL_PREFIX_MAX];
	char host[128];               /* whose metrics */
	int64_t lease_ms;
	int64_t next_connect_ms;      /* no reconnection attempt before this */
	int64_t backoff_ms;
	char sha[SC_COUNT_][41];
	char err[256];
};

/* One outage is logged once per process, not once per thread's handle. */
static atomic_int outage_logged;

static void set_err(struct redis_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct redis_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
}

const char *redis_store_strerror(const struct redis_store *s)
{
	return s->err;
}

/* "127.0.0.1:6379" or the socket path, for messages (never a password: the URL has none). */
static void describe(const struct redis_store *s, char *out, size_t outlen)
{
	if (s->url.kind == STORE_REDIS_UNIX)
		snprintf(out, outlen, "%s", s->url.path);
	else
		snprintf(out, outlen, "%s:%d", s->url.host, s->url.port);
}

static void drop_connection(struct redis_store *s)
{
	if (s->c != NULL)
		redisFree(s->c);
	s->c = NULL;
}

/* A command on the raw context, with a reason in s->err when it fails or answers an error. */
static int simple(struct redis_store *s, redisReply **out, const char *what, int argc,
		  const char **argv, const size_t *lens)
{
	redisReply *r = redisCommandArgv(s->c, argc, argv, lens);

	if (r == NULL) {
		set_err(s, "%s: %s", what, s->c->errstr[0] != '\0' ? s->c->errstr : "no answer");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(s, "%s: %.200s", what, r->str);
		freeReplyObject(r);
		return -1;
	}
	if (out != NULL)
		*out = r;
	else
		freeReplyObject(r);
	return 0;
}

/* AUTH, written from a buffer of ours that is wiped after: hiredis 0.14 formats every command
 * into an output buffer it frees without wiping (and takes no allocator), so the password would
 * linger in freed memory. The reply is read through hiredis as usual; it never echoes it. */
static int authenticate(struct redis_store *s)
{
	size_t len = strlen(s->password), cap = len + 64, n, done = 0;
	char *cmd = malloc(cap);
	redisReply *r = NULL;
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
	if (redisGetReply(s->c, (void **)&r) != REDIS_OK || r == NULL) {
		set_err(s, "AUTH: %s", s->c->errstr[0] != '\0' ? s->c->errstr : "no answer");
		goto out;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(s, "AUTH: %.200s", r->str);
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
	redisReply *r;

	if (simple(s, &r, "SCRIPT LOAD", 3, argv, lens) != 0)
		return -1;
	snprintf(s->sha[id], sizeof s->sha[id], "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
	freeReplyObject(r);
	return 0;
}

/* Connects, authenticates, selects the database and loads the scripts. */
static int connect_now(struct redis_store *s)
{
	struct timeval ct = { CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000 };
	struct timeval tt = { COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000 };
	char db[16];
	int i;

	drop_connection(s);
	if (s->url.kind == STORE_REDIS_UNIX)
		s->c = redisConnectUnixWithTimeout(s->url.path, ct);
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
	if (redisSetTimeout(s->c, tt) != REDIS_OK) {
		set_err(s, "setting the Redis timeout: %s", s->c->errstr);
		goto fail;
	}
	if (s->password != NULL && authenticate(s) != 0)
		goto fail;
	if (s->url.db != 0) {
		const char *argv[2] = { "SELECT", db };
		size_t lens[2] = { 6, 0 };

		lens[1] = (size_t)snprintf(db, sizeof db, "%d", s->url.db);
		if (simple(s, NULL, "SELECT", 2, argv, lens) != 0)
			goto fail;
	}
	for (i = 0; i < SC_COUNT_; i++)
		if (load_script(s, (enum script_id)i) != 0)
			goto fail;
	return 0;
fail:
	drop_connection(s);
	return -1;
}

/* A live connection, reconnecting when the backoff allows. Logs the start and the end of an
 * outage once per process. */
static int ensure_connected(struct redis_store *s)
{
	char where[STORE_URL_PATH_MAX + 16];
	int64_t now;

	if (s->c != NULL && s->c->err == 0)
		return 0;
	drop_connection(s);
	now = clock_now_ms();
	if (now < s->next_connect_ms) {
		/* s->err still holds the failure that started the wait */
		return -1;
	}
	describe(s, where, sizeof where);
	if (connect_now(s) != 0) {
		s->backoff_ms = s->backoff_ms == 0 ? BACKOFF_FIRST_MS : s->backoff_ms * 2;
		if (s->backoff_ms > BACKOFF_MAX_MS)
			s->backoff_ms = BACKOFF_MAX_MS;
		s->next_connect_ms = now + s->backoff_ms;
		if (atomic_exchange(&outage_logged, 1) == 0)
			log_msg(LOG_ERROR, "Redis at %s is unreachable (%s); retrying with backoff",
				where, s->err);
		return -1;
	}
	s->backoff_ms = 0;
	s->next_connect_ms = 0;
	if (atomic_exchange(&outage_logged, 0) == 1)
		log_msg(LOG_WARNING, "Redis at %s is reachable again", where);
	return 0;
}

/* Runs one command. reads may be retried once on a fresh connection: a read that failed
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
		if (simple(s, &r, what, argc, argv, lens) == 0)
			return r;
		if (s->c->err == 0)
			return NULL; /* an error answer: the connection is fine */
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
		r = redisCommandArgv(s->c, nargs + 3, argv, argl);
		if (r == NULL) {
			set_err(s, "%s: %s", what, s->c->errstr[0] != '\0' ? s->c->errstr : "no answer");
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
			set_err(s, "%s: %.200s", what, r->str);
			freeReplyObject(r);
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

/* An integer from a reply element (an integer or a decimal string); 0 if neither. */
static long long int_of(const redisReply *r)
{
	if (r == NULL)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
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

/* The by-message field: chat ids fold their case (an @username is one chat whatever its case;
 * digits fold to themselves), as the SQLite backend's NOCASE match does. */
static void message_field(const char *chat_id, long long message_id, char *out, size_t outlen)
{
	size_t i, n;

	snprintf(out, outlen, "%s:%lld", chat_id, message_id);
	n = strlen(chat_id) < outlen ? strlen(chat_id) : outlen;
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)out[i]);
}

/* ---- opening -------------------------------------------------------------------------------- */

/* Read with read(2), not stdio, whose buffer would be freed unwiped. A password of
 * PASSWORD_MAX bytes or more is refused rather than cut. */
#define PASSWORD_MAX 1024
static char *read_password(const char *path, char *err, size_t errlen)
{
	char buf[PASSWORD_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t got = 0;
	char *pw = NULL;

	if (fd < 0) {
		snprintf(err, errlen, "OTP_REDIS_PASSWORD_FILE %s: %s", path, strerror(errno));
		return NULL;
	}
	while (n < sizeof buf - 1 && ((got = read(fd, buf + n, sizeof buf - 1 - n)) > 0 ||
				      (got < 0 && errno == EINTR)))
		if (got > 0)
			n += (size_t)got;
	if (got < 0)
		snprintf(err, errlen, "OTP_REDIS_PASSWORD_FILE %s: %s", path, strerror(errno));
	close(fd);
	if (got < 0)
		goto out;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0')
		snprintf(err, errlen, "OTP_REDIS_PASSWORD_FILE %s: empty", path);
	else if (strlen(buf) >= PASSWORD_MAX)
		snprintf(err, errlen, "OTP_REDIS_PASSWORD_FILE %s: the password is longer than %d bytes",
			 path, PASSWORD_MAX - 1);
	else if ((pw = strdup(buf)) == NULL)
		snprintf(err, errlen, "out of memory");
out:
	secmem_wipe(buf, sizeof buf);
	return pw;
}

struct redis_store *redis_store_open(const struct store_url *u, const struct store_config *c,
				     char *err, size_t errlen)
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
	    (s->password = read_password(c->redis_password_file, err, errlen)) == NULL)
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

void redis_store_close(struct redis_store *s)
{
	if (s == NULL)
		return;
	drop_connection(s);
	if (s->password != NULL) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	free(s);
}

/* ---- rate limits and the send queue --------------------------------------------------------- */

int redis_store_rate_take(struct redis_store *s, const struct store_rate_rule *rules, int nrules,
			  const struct store_slot_request *slot, int64_t now_ms,
			  struct store_rate_verdict *v)
{
	char keys[STORE_RATE_RULES_MAX + 3][KEY_MAX], subjects[STORE_RATE_RULES_MAX][KEY_MAX];
	struct args *a = calloc(1, sizeof *a);
	redisReply *r = NULL;
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
		slot != NULL && slot->pause_kind != NULL ? slot->pause_kind : "none") != 0)
		goto out;
	for (i = 0; i < nrules + 3; i++)
		arg_str(a, keys[i]);
	arg_int(a, nrules);
	arg_int(a, now_ms);
	for (i = 0; i < nrules; i++) {
		int64_t ttl = now_ms - rules[i].expired_ms + 1000;

		arg_int(a, rules[i].limit);
		arg_int(a, rules[i].expired_ms);
		arg_int(a, ttl > 1000 ? ttl : 1000);
		arg_str(a, subjects[i]);
		arg_str(a, rules[i].subject);
	}
	arg_str(a, slot != NULL ? "1" : "0");
	arg_int(a, slot != NULL ? slot->now_us : 0);
	arg_int(a, slot != NULL ? slot->spacing_us : 0);
	arg_int(a, slot != NULL ? slot->latest_us : 0);
	arg_str(a, slot != NULL && slot->pause_kind != NULL ? "1" : "0");
	arg_int(a, slot != NULL ? slot->pause_cap_us : 0);
	r = eval(s, SC_RATE_TAKE, 0, "take rate events", nrules + 3, a->n, a->v, a->len);
	if (r == NULL)
		goto out;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 5 ||
	    (int_of(r->element[0]) < 0 && int_of(r->element[2]) == 0 &&
	     r->elements != 5 + 2 * (size_t)nrules)) {
		set_err(s, "take rate events: unexpected answer");
		goto out;
	}
	if (int_of(r->element[0]) > nrules) {
		set_err(s, "take rate events: unexpected answer (rule %lld)", int_of(r->element[0]));
		goto out;
	}
	if (int_of(r->element[0]) > 0) {
		v->refused_rule = (int)int_of(r->element[0]) - 1;
		v->freeing_at_ms = int_of(r->element[1]);
		rc = 0;
		goto out;
	}
	v->slot_refused = (int)int_of(r->element[2]);
	v->slot_paused = (int)int_of(r->element[3]);
	v->slot_us = int_of(r->element[4]);
	if (!v->slot_refused) {
		for (i = 0; i < nrules; i++) {
			struct store_rate_event *e = &v->slot_events[v->nslots];

			e->at_ms = int_of(r->element[6 + 2 * i]);
			snprintf(e->scope, sizeof e->scope, "%s", rules[i].scope);
			snprintf(e->subject, sizeof e->subject, "%s", rules[i].subject);
			v->slot_ids[v->nslots++] = int_of(r->element[5 + 2 * i]);
		}
	}
	rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	free(a);
	return rc;
}

int redis_store_rate_release(struct redis_store *s, const struct store_rate_verdict *v)
{
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
		    NULL)
			return -1;
		freeReplyObject(r);
	}
	return 0;
}

/* Subjects whose oldest event expired, from the scope's sorted set (P rate-subjects:<scope>),
 * a bounded batch per script run so that Redis is never blocked for long. Each list also
 * expires on its own (PEXPIRE), should no otp-deleter sweep. */
int redis_store_rate_prune(struct redis_store *s, const char *scope, int64_t expired_ms)
{
	char ksub[KEY_MAX], klist[KEY_MAX];
	int total = 0, n;

	if (key(s, ksub, "rate-subjects:%s", scope) != 0 || key(s, klist, "rate:%s:", scope) != 0)
		return -1;
	do {
		struct args a = { .n = 0 };
		redisReply *r;

		arg_str(&a, ksub);
		arg_str(&a, klist);
		arg_int(&a, expired_ms);
		arg_int(&a, 1000);
		if ((r = eval(s, SC_RATE_PRUNE, 1, "prune rate events", 1, a.n, a.v, a.len)) == NULL)
			return -1;
		n = (int)int_of(r);
		freeReplyObject(r);
		total += n;
	} while (n >= 1000);
	return total;
}

long long redis_store_rate_count(struct redis_store *s, const char *scope, const char *subject)
{
	char k[KEY_MAX];
	const char *argv[2] = { "LLEN", k };
	size_t lens[2] = { 4, 0 };
	redisReply *r;
	long long n;

	if (key(s, k, "rate:%s:%s", scope, subject) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "count rate events", 2, argv, lens)) == NULL)
		return -1;
	n = int_of(r);
	freeReplyObject(r);
	return n;
}

/* ---- pending deletions ---------------------------------------------------------------------- */

int redis_store_pending_add(struct redis_store *s, const char *chat_id, long long message_id,
			    int64_t delete_at_ms)
{
	char kseq[KEY_MAX], kdue[KEY_MAX], kidx[KEY_MAX], field[STORE_CHAT_ID_MAX + 24];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, kseq, "pending:seq") != 0 || key(s, kdue, "pending:due") != 0 ||
	    key(s, kidx, "pending:by-message") != 0)
		return -1;
	message_field(chat_id, message_id, field, sizeof field);
	arg_str(&a, kseq);
	arg_str(&a, kdue);
	arg_str(&a, kidx);
	arg_str(&a, s->prefix);
	arg_str(&a, chat_id);
	arg_int(&a, message_id);
	arg_int(&a, delete_at_ms);
	arg_int(&a, clock_now_ms());
	arg_str(&a, field);
	if ((r = eval(s, SC_PENDING_ADD, 0, "add pending deletion", 3, a.n, a.v, a.len)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* Fills p from a reply array {id, chat_id, message_id, delete_at_ms, next_try_ms, attempts}
 * starting at element first. */
static void pending_of(const redisReply *r, size_t first, struct pending *p)
{
	const redisReply *chat = r->element[first + 1];

	memset(p, 0, sizeof *p);
	p->id = int_of(r->element[first]);
	snprintf(p->chat_id, sizeof p->chat_id, "%s",
		 chat->type == REDIS_REPLY_STRING ? chat->str : "");
	p->message_id = int_of(r->element[first + 2]);
	p->delete_at_ms = int_of(r->element[first + 3]);
	p->next_try_ms = int_of(r->element[first + 4]);
	p->attempts = (int)int_of(r->element[first + 5]);
}

int redis_store_pending_due(struct redis_store *s, int64_t now_ms, struct pending *out, int max)
{
	char kdue[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;
	size_t i;
	int n = 0;

	if (max <= 0)
		return 0;
	if (key(s, kdue, "pending:due") != 0)
		return -1;
	arg_str(&a, kdue);
	arg_str(&a, s->prefix);
	arg_int(&a, now_ms);
	arg_int(&a, max);
	arg_int(&a, now_ms + s->lease_ms);
	if ((r = eval(s, SC_PENDING_DUE, 0, "claim due deletions", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY) {
		set_err(s, "claim due deletions: unexpected answer");
		freeReplyObject(r);
		return -1;
	}
	for (i = 0; i < r->elements && n < max; i++) {
		const redisReply *row = r->element[i];

		if (row->type == REDIS_REPLY_ARRAY && row->elements == 6)
			pending_of(row, 0, &out[n++]);
	}
	freeReplyObject(r);
	return n;
}

int redis_store_pending_next(struct redis_store *s, int64_t *next_ms)
{
	char kdue[KEY_MAX];
	const char *argv[5] = { "ZRANGE", kdue, "0", "0", "WITHSCORES" };
	size_t lens[5] = { 6, 0, 1, 1, 10 };
	redisReply *r;
	int found = 0;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	lens[1] = strlen(kdue);
	if ((r = run(s, 1, "read next deletion", 5, argv, lens)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		*next_ms = int_of(r->element[1]);
		found = 1;
	}
	freeReplyObject(r);
	return found;
}

int redis_store_pending_last(struct redis_store *s, int64_t *last_ms)
{
	char kdue[KEY_MAX];
	const char *argv[5] = { "ZRANGE", kdue, "-1", "-1", "WITHSCORES" };
	size_t lens[5] = { 6, 0, 2, 2, 10 };
	redisReply *r;
	int found = 0;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	lens[1] = strlen(kdue);
	if ((r = run(s, 1, "read last deletion", 5, argv, lens)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		*last_ms = int_of(r->element[1]);
		found = 1;
	}
	freeReplyObject(r);
	return found;
}

long long redis_store_pending_count(struct redis_store *s)
{
	char kdue[KEY_MAX];
	const char *argv[2] = { "ZCARD", kdue };
	size_t lens[2] = { 5, 0 };
	redisReply *r;
	long long n;

	if (key(s, kdue, "pending:due") != 0)
		return -1;
	lens[1] = strlen(kdue);
	if ((r = run(s, 1, "count pending deletions", 2, argv, lens)) == NULL)
		return -1;
	n = int_of(r);
	freeReplyObject(r);
	return n;
}

int redis_store_pending_remove(struct redis_store *s, int64_t id)
{
	return redis_store_pending_remove_many(s, &id, 1);
}

int redis_store_pending_remove_many(struct redis_store *s, const int64_t *ids, int n)
{
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
		if (r == NULL)
			rc = -1;
		else
			freeReplyObject(r);
	}
	free(a);
	return rc;
}

int redis_store_pending_retry(struct redis_store *s, int64_t id, int64_t next_try_ms)
{
	char kdue[KEY_MAX], krow[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0 || key(s, krow, "pending:%lld", (long long)id) != 0)
		return -1;
	arg_str(&a, kdue);
	arg_str(&a, krow);
	arg_int(&a, id);
	arg_int(&a, next_try_ms);
	if ((r = eval(s, SC_PENDING_RETRY, 0, "record retry", 2, a.n, a.v, a.len)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

int redis_store_pending_claim(struct redis_store *s, const char *chat_id, long long message_id,
			      int64_t lease_ms, struct pending *out)
{
	char kidx[KEY_MAX], kdue[KEY_MAX], field[STORE_CHAT_ID_MAX + 24];
	struct args a = { .n = 0 };
	redisReply *r;
	int rc = -1;

	if (key(s, kidx, "pending:by-message") != 0 || key(s, kdue, "pending:due") != 0)
		return -1;
	message_field(chat_id, message_id, field, sizeof field);
	arg_str(&a, kidx);
	arg_str(&a, kdue);
	arg_str(&a, s->prefix);
	arg_str(&a, field);
	arg_int(&a, clock_now_ms());
	arg_int(&a, lease_ms);
	arg_int(&a, STORE_CLAIM_MARGIN_MS);
	if ((r = eval(s, SC_PENDING_CLAIM, 0, "claim pending deletion", 2, a.n, a.v, a.len)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
		set_err(s, "claim pending deletion: unexpected answer");
	} else if (int_of(r->element[0]) == 0) {
		rc = STORE_CLAIM_NONE;
	} else if (r->elements == 7) {
		pending_of(r, 1, out);
		rc = int_of(r->element[0]) == 2 ? STORE_CLAIM_TAKEN : STORE_CLAIM_DUE;
	} else {
		set_err(s, "claim pending deletion: unexpected answer");
	}
	freeReplyObject(r);
	return rc;
}

int redis_store_pending_release(struct redis_store *s, int64_t id, int64_t now_ms)
{
	char kdue[KEY_MAX], krow[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, kdue, "pending:due") != 0 || key(s, krow, "pending:%lld", (long long)id) != 0)
		return -1;
	arg_str(&a, kdue);
	arg_str(&a, krow);
	arg_int(&a, id);
	arg_int(&a, now_ms);
	if ((r = eval(s, SC_PENDING_RELEASE, 1, "release pending deletion", 2, a.n, a.v, a.len)) ==
	    NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* ---- pauses, heartbeats, metrics ------------------------------------------------------------ */

int redis_store_pause_extend(struct redis_store *s, const char *kind, int64_t until_ms,
			     const char *program)
{
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, k, "pause:%s", kind) != 0)
		return -1;
	arg_str(&a, k);
	arg_int(&a, until_ms);
	arg_str(&a, program);
	if ((r = eval(s, SC_PAUSE_EXTEND, 1, "record Telegram's pause", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

int redis_store_pause_get(struct redis_store *s, const char *kind, int64_t *until_ms)
{
	char k[KEY_MAX];
	const char *argv[3] = { "HGET", k, "until_ms" };
	size_t lens[3] = { 4, 0, 8 };
	redisReply *r;
	int found = 0;

	if (key(s, k, "pause:%s", kind) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "read Telegram's pause", 3, argv, lens)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING) {
		*until_ms = int_of(r);
		found = 1;
	}
	freeReplyObject(r);
	return found;
}

int redis_store_heartbeat_set(struct redis_store *s, const char *program, int64_t now_ms)
{
	char k[KEY_MAX];
	struct args a = { .n = 0 };
	redisReply *r;

	if (key(s, k, "heartbeat:%s", program) != 0)
		return -1;
	arg_str(&a, k);
	arg_int(&a, now_ms);
	/* max(old, new): running it twice is harmless, so it is retried like a read */
	if ((r = eval(s, SC_HEARTBEAT_SET, 1, "write heartbeat", 1, a.n, a.v, a.len)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

int redis_store_heartbeat_get(struct redis_store *s, const char *program, int64_t *beat_ms)
{
	char k[KEY_MAX];
	const char *argv[2] = { "GET", k };
	size_t lens[2] = { 3, 0 };
	redisReply *r;
	int found = 0;

	if (key(s, k, "heartbeat:%s", program) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "read heartbeat", 2, argv, lens)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING) {
		*beat_ms = int_of(r);
		found = 1;
	}
	freeReplyObject(r);
	return found;
}

/* Metrics stay per host (P metrics:<host>): each host's /metrics answers its own totals, so
 * Prometheus scraping every host sums them without counting anything twice. */
int redis_store_metrics_add(struct redis_store *s, const struct store_metric *d, int n,
			    int *added)
{
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
		if (r == NULL) {
			rc = -1;
			break;
		}
		freeReplyObject(r);
		*added = done + chunk;
	}
	free(fields);
	free(a);
	return rc;
}

int redis_store_metrics_read(struct redis_store *s,
			     void (*fn)(void *ctx, const struct store_metric *m), void *ctx)
{
	char k[KEY_MAX], name[256];
	const char *argv[2] = { "HGETALL", k };
	size_t lens[2] = { 7, 0 }, i;
	redisReply *r;

	if (key(s, k, "metrics:%s", s->host) != 0)
		return -1;
	lens[1] = strlen(k);
	if ((r = run(s, 1, "read metrics", 2, argv, lens)) == NULL)
		return -1;
	for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *v = r->element[i + 1];
		struct store_metric m;
		char *brace, *end;

		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		snprintf(name, sizeof name, "%s", f->str);
		brace = strchr(name, '{');
		end = strrchr(name, '}');
		if (brace == NULL || end == NULL || end < brace || end[1] != '\0')
			continue; /* not ours */
		*brace = '\0';
		*end = '\0';
		m.name = name;
		m.labels = brace + 1;
		m.value = strtod(v->str, NULL);
		fn(ctx, &m);
	}
	freeReplyObject(r);
	return 0;
}
