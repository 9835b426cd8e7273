/* redis_sentinel.c — asking Redis Sentinel where the primary is. See redis_sentinel.h. */
#define _GNU_SOURCE
#include "redis_sentinel.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "secmem.h"
#include "store_redis_reply.h"

static int fail(const char **why, const char *what)
{
	*why = what;
	return -1;
}

/* ---- the replies ------------------------------------------------------------------------- */

/* A host as servers report it: a name or an address, nothing a log or a connect could misread. */
static int host_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == ':' || s[i] == '-' ||
		      s[i] == '_'))
			return 0;
	return n > 0;
}

int redis_sentinel_reply_addr(const redisReply *r, struct redis_sentinel_primary *out,
			      int *known, const char **why)
{
	const char *host;
	long long port;

	if (r != NULL && r->type == REDIS_REPLY_NIL) {
		*known = 0;
		return 0;
	}
	if (redis_reply_array(r, 2, 2, why) != 0 ||
	    redis_reply_str(r->element[0], STORE_URL_HOST_MAX - 1, &host, why) != 0 ||
	    redis_reply_int(r->element[1], 1, 65535, &port, why) != 0)
		return -1;
	if (!host_ok(host, r->element[0]->len))
		return fail(why, "not a host");
	memcpy(out->host, host, r->element[0]->len + 1);
	out->port = (int)port;
	*known = 1;
	return 0;
}

/* The first element of ROLE's reply is "master", "slave" or "sentinel". */
static int role_is(const redisReply *r, const char *name)
{
	return r->type == REDIS_REPLY_STRING && r->len == strlen(name) &&
	       memcmp(r->str, name, r->len) == 0;
}

int redis_sentinel_reply_role(const redisReply *r, int *is_primary, int *replicas,
			      const char **why)
{
	const redisReply *list;
	long long offset;
	size_t i;

	if (redis_reply_array(r, 2, 5, why) != 0)
		return -1;
	if (role_is(r->element[0], "master")) {
		if (r->elements != 3 ||
		    redis_reply_int(r->element[1], 0, INT64_MAX, &offset, why) != 0 ||
		    redis_reply_array(r->element[2], 0, REDIS_REPLY_ELEMENTS_MAX, why) != 0)
			return fail(why, "not a primary's ROLE");
		list = r->element[2];
		for (i = 0; i < list->elements; i++)
			if (redis_reply_array(list->element[i], 3, 3, why) != 0)
				return -1;
		*is_primary = 1;
		*replicas = (int)list->elements;
		return 0;
	}
	if ((role_is(r->element[0], "slave") && r->elements == 5) ||
	    (role_is(r->element[0], "sentinel") && r->elements == 2)) {
		*is_primary = 0;
		*replicas = 0;
		return 0;
	}
	return fail(why, "not a ROLE");
}

int redis_sentinel_reply_info_replicas(const redisReply *r, int *replicas, const char **why)
{
	static const char key[] = "connected_slaves:";
	const char *text, *line, *p;
	long n = 0;

	if (redis_reply_str(r, REDIS_REPLY_STRING_MAX, &text, why) != 0)
		return -1;
	for (line = text; line != NULL; line = (p = strchr(line, '\n')) != NULL ? p + 1 : NULL)
		if (strncmp(line, key, sizeof key - 1) == 0)
			break;
	if (line == NULL)
		return fail(why, "no connected_slaves in INFO replication");
	p = line + sizeof key - 1;
	if (*p < '0' || *p > '9')
		return fail(why, "connected_slaves not a number");
	for (; *p >= '0' && *p <= '9'; p++)
		if ((n = n * 10 + (*p - '0')) > 65535)
			return fail(why, "connected_slaves out of range");
	if (*p != '\r' && *p != '\n' && *p != '\0')
		return fail(why, "connected_slaves not a number");
	*replicas = (int)n;
	return 0;
}

/* ---- asking a sentinel ------------------------------------------------------------------- */

/* Sends what c has buffered and reads one reply by the monotonic instant deadline_ms (a
 * sentinel that trickles its reply cannot hold us longer). NULL with the reason in err. */
static redisReply *exchange(redisContext *c, int64_t deadline_ms, char *err, size_t errlen)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	void *reply = NULL;
	int done = 0, n;
	int64_t left;

	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			goto io;
	for (;;) {
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			goto io;
		if (reply != NULL)
			return reply;
		left = deadline_ms - clock_mono_ms();
		n = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s", n == 0 ? "no answer in time" : strerror(errno));
			return NULL;
		}
		if (redisBufferRead(c) != REDIS_OK)
			goto io;
	}
io:
	snprintf(err, errlen, "%s", c->err == REDIS_ERR_OOM ? "a reply beyond the bounds"
				    : c->errstr[0] != '\0' ? c->errstr : "connection closed");
	return NULL;
}

/* AUTH, written from a buffer of ours that is wiped after (hiredis would keep the password in
 * an output buffer it frees unwiped). Returns 0, or -1 with the reason in err. */
static int authenticate(redisContext *c, const char *password, int64_t deadline_ms, char *err,
			size_t errlen)
{
	size_t len = strlen(password), cap = len + 64, n, done = 0;
	char *cmd = malloc(cap);
	redisReply *r = NULL;
	const char *why;
	ssize_t w;
	int rc = -1;

	if (cmd == NULL) {
		snprintf(err, errlen, "AUTH: out of memory");
		return -1;
	}
	n = (size_t)snprintf(cmd, cap, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n", len);
	memcpy(cmd + n, password, len);
	memcpy(cmd + n + len, "\r\n", 2);
	n += len + 2;
	while (done < n) {
		w = write(c->fd, cmd + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "AUTH: %s", w < 0 ? strerror(errno) : "connection closed");
			goto out;
		}
		done += (size_t)w;
	}
	if ((r = exchange(c, deadline_ms, err, errlen)) == NULL)
		goto out;
	if (r->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "AUTH: %.200s", r->str);
	else if (redis_reply_ok(r, &why) != 0)
		snprintf(err, errlen, "AUTH: unexpected reply (%s)", why);
	else
		rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	secmem_wipe(cmd, cap);
	free(cmd);
	return rc;
}

/* One sentinel's answer. Returns 0 with *out, or -1 with the reason in err. */
static int ask_one(const struct store_url_node *n, const char *master, const char *password,
		   int64_t deadline_ms, struct redis_sentinel_primary *out, char *err,
		   size_t errlen)
{
	const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", master }, *why;
	size_t lens[3] = { 8, 23, strlen(master) };
	int64_t left = deadline_ms - clock_mono_ms();
	struct timeval tv = { left / 1000, (left % 1000) * 1000 };
	redisContext *c;
	redisReply *r = NULL;
	int known = 0, rc = -1;

	if (left <= 0) {
		snprintf(err, errlen, "no time left");
		return -1;
	}
	c = redisConnectWithTimeout(n->host, n->port, tv);
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (c->err != 0) {
		snprintf(err, errlen, "%s", c->errstr);
		goto out;
	}
	if (redis_reply_limit(c->reader) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (password != NULL && authenticate(c, password, deadline_ms, err, errlen) != 0)
		goto out;
	if (redisAppendCommandArgv(c, 3, argv, lens) != REDIS_OK) {
		snprintf(err, errlen, "%s", c->errstr);
		goto out;
	}
	if ((r = exchange(c, deadline_ms, err, errlen)) == NULL)
		goto out;
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%.200s", r->str);
		goto out;
	}
	if (redis_sentinel_reply_addr(r, out, &known, &why) != 0) {
		snprintf(err, errlen, "unexpected reply (%s)", why);
		goto out;
	}
	if (!known) {
		snprintf(err, errlen, "does not know the master %s", master);
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

int redis_sentinel_ask(const struct store_url *u, const char *password, int *next,
		       int timeout_ms, int64_t deadline_ms, struct redis_sentinel_primary *out,
		       char *err, size_t errlen)
{
	char why[256] = "no sentinel";
	int i, k, first = *next >= 0 && *next < u->nsentinels ? *next : 0;

	for (i = 0; i < u->nsentinels; i++) {
		const struct store_url_node *n = &u->sentinels[(first + i) % u->nsentinels];
		int64_t by = clock_mono_ms() + timeout_ms;

		if (clock_mono_ms() >= deadline_ms)
			break;
		k = (first + i) % u->nsentinels;
		if (ask_one(n, u->master, password, by < deadline_ms ? by : deadline_ms, out, why,
			    sizeof why) == 0) {
			*next = k;
			return 0;
		}
		snprintf(err, errlen, "asking the sentinel at %s:%d for %s: %s", n->host, n->port,
			 u->master, why);
	}
	if (i == 0)
		snprintf(err, errlen, "asking the sentinels for %s: %s", u->master, why);
	/* the next round starts past the sentinels that failed */
	*next = (first + 1) % u->nsentinels;
	return -1;
}

/* ---- changes of primary ------------------------------------------------------------------- */

static pthread_mutex_t primary_lock = PTHREAD_MUTEX_INITIALIZER;
static struct redis_sentinel_primary known_primary; /* host "" until the first one */
static long changes;

void redis_sentinel_note_primary(const char *master, const struct redis_sentinel_primary *p)
{
	struct redis_sentinel_primary was;
	int first, changed;

	pthread_mutex_lock(&primary_lock);
	was = known_primary;
	first = was.host[0] == '\0';
	changed = !first && (strcmp(was.host, p->host) != 0 || was.port != p->port);
	if (first || changed)
		known_primary = *p;
	if (changed)
		changes++;
	pthread_mutex_unlock(&primary_lock);
	if (first)
		log_msg(LOG_INFO, "Redis primary of %s: %s:%d (from the sentinels)", master, p->host,
			p->port);
	else if (changed)
		log_msg(LOG_WARNING, "Redis primary of %s changed: %s:%d is the primary now "
			"(was %s:%d)", master, p->host, p->port, was.host, was.port);
}

long redis_sentinel_changes_take(void)
{
	long n;

	pthread_mutex_lock(&primary_lock);
	n = changes;
	changes = 0;
	pthread_mutex_unlock(&primary_lock);
	return n;
}
