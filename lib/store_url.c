/* store_url.c — parses the store's URL (OTP_STORE). See store_url.h. */
#include "store_url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "OTP_STORE: %s", why);
	return -1;
}

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int store_url_is_redis(const char *url)
{
	return starts(url, "redis://") || starts(url, "redis+unix://") ||
	       starts(url, "redis+sentinel://");
}

/* A decimal number in [lo, hi] spanning exactly [s, end). */
static int parse_num(const char *s, const char *end, long lo, long hi, int *out)
{
	char buf[16], *e;
	long v;

	if (end <= s || (size_t)(end - s) >= sizeof buf)
		return -1;
	memcpy(buf, s, (size_t)(end - s));
	buf[end - s] = '\0';
	if (buf[0] < '0' || buf[0] > '9')
		return -1;
	errno = 0;
	v = strtol(buf, &e, 10);
	if (errno != 0 || *e != '\0' || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* The query string q (after '?'): db=N, prefix=P and clock=redis|host, '&'-separated. */
static int parse_query(const char *q, struct store_url *out, int allow_db, char *err, size_t errlen)
{
	while (*q != '\0') {
		const char *amp = strchr(q, '&'), *end = amp != NULL ? amp : q + strlen(q);

		if (allow_db && starts(q, "db=")) {
			if (parse_num(q + 3, end, 0, 65535, &out->db) != 0)
				return fail(err, errlen, "db must be a number in 0-65535");
		} else if (starts(q, "prefix=")) {
			size_t n = (size_t)(end - (q + 7));

			if (n == 0 || n >= sizeof out->prefix)
				return fail(err, errlen, "prefix must be 1-63 characters");
			memcpy(out->prefix, q + 7, n);
			out->prefix[n] = '\0';
		} else if (starts(q, "clock=")) {
			if ((size_t)(end - q) == 10 && starts(q, "clock=host"))
				out->clock_host = 1;
			else if ((size_t)(end - q) == 11 && starts(q, "clock=redis"))
				out->clock_host = 0;
			else
				return fail(err, errlen, "clock must be redis or host");
		} else {
			return fail(err, errlen,
				    "unknown query parameter (db=, prefix=, clock= are known)");
		}
		q = amp != NULL ? amp + 1 : end;
	}
	return 0;
}

static int copy_to(char *dst, size_t dstlen, const char *s, size_t n)
{
	if (n >= dstlen)
		return -1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

/* host[:port] spanning exactly [a, end) (an IPv6 address in brackets) into host and *port,
 * def_port when the port is absent. */
static int parse_host_port(const char *a, const char *end, char *host, size_t hostlen, int *port,
			   int def_port, char *err, size_t errlen)
{
	const char *host_end, *colon;

	if (memchr(a, '@', (size_t)(end - a)) != NULL)
		return fail(err, errlen, "no user or password in the URL: put the password in the "
				       "file named by OTP_REDIS_PASSWORD_FILE");
	if (*a == '[') {
		host_end = memchr(a, ']', (size_t)(end - a));
		if (host_end == NULL)
			return fail(err, errlen, "unclosed '[' in the host");
		if (copy_to(host, hostlen, a + 1, (size_t)(host_end - a - 1)) != 0)
			return fail(err, errlen, "host too long");
		colon = host_end + 1 < end && host_end[1] == ':' ? host_end + 1 : NULL;
		if (colon == NULL && host_end + 1 != end)
			return fail(err, errlen, "unexpected text after ']'");
	} else {
		colon = memchr(a, ':', (size_t)(end - a));
		host_end = colon != NULL ? colon : end;
		if (copy_to(host, hostlen, a, (size_t)(host_end - a)) != 0)
			return fail(err, errlen, "host too long");
	}
	if (host[0] == '\0')
		return fail(err, errlen, "the Redis URL has no host");
	*port = def_port;
	if (colon != NULL && parse_num(colon + 1, end, 1, 65535, port) != 0)
		return fail(err, errlen, "the port must be a number in 1-65535");
	return 0;
}

/* The end of a URL's authority: its first '/' or '?', or its end. */
static const char *authority_end(const char *a)
{
	return a + strcspn(a, "/?");
}

static int parse_tcp(const char *a, struct store_url *out, char *err, size_t errlen)
{
	const char *auth_end = authority_end(a), *qm = strchr(a, '?'), *path_end;

	if (parse_host_port(a, auth_end, out->host, sizeof out->host, &out->port, 6379, err,
			    errlen) != 0)
		return -1;
	if (*auth_end == '/') {
		path_end = qm != NULL ? qm : auth_end + strlen(auth_end);
		if (path_end > auth_end + 1 &&
		    parse_num(auth_end + 1, path_end, 0, 65535, &out->db) != 0)
			return fail(err, errlen, "the database (after '/') must be a number in 0-65535");
	}
	return qm != NULL ? parse_query(qm + 1, out, 0, err, errlen) : 0;
}

/* A master name as Sentinel knows it: letters, digits, '.', '_' and '-'. */
static int master_name_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return 0;
	return n > 0;
}

/* h1[:port],h2[:port],.../<master-name>[/db][?query] */
static int parse_sentinel(const char *a, struct store_url *out, char *err, size_t errlen)
{
	const char *auth_end = authority_end(a), *qm = strchr(a, '?'), *p = a, *comma, *name,
		   *name_end, *path_end;

	while (p < auth_end) {
		struct store_url_node *n = &out->sentinels[out->nsentinels];

		if (out->nsentinels == STORE_URL_SENTINELS_MAX)
			return fail(err, errlen, "more than 8 sentinels");
		comma = memchr(p, ',', (size_t)(auth_end - p));
		if (comma == NULL)
			comma = auth_end;
		if (parse_host_port(p, comma, n->host, sizeof n->host, &n->port, 26379, err,
				    errlen) != 0)
			return -1;
		out->nsentinels++;
		p = comma < auth_end ? comma + 1 : auth_end;
		if (comma + 1 == auth_end)
			return fail(err, errlen, "the Redis URL has no host");
	}
	if (out->nsentinels == 0)
		return fail(err, errlen, "redis+sentinel:// needs at least one sentinel "
				       "(redis+sentinel://h1:26379,h2:26379,h3:26379/mymaster)");
	path_end = qm != NULL ? qm : auth_end + strlen(auth_end);
	name = *auth_end == '/' ? auth_end + 1 : auth_end;
	name_end = memchr(name, '/', (size_t)(path_end - name));
	if (name_end == NULL)
		name_end = path_end;
	if (!master_name_ok(name, (size_t)(name_end - name)) ||
	    copy_to(out->master, sizeof out->master, name, (size_t)(name_end - name)) != 0)
		return fail(err, errlen, "redis+sentinel:// needs the master's name after the "
				       "sentinels: 1-63 letters, digits, '.', '_' or '-'");
	if (name_end < path_end && name_end + 1 < path_end &&
	    parse_num(name_end + 1, path_end, 0, 65535, &out->db) != 0)
		return fail(err, errlen, "the database (after the master's name) must be a number "
				       "in 0-65535");
	return qm != NULL ? parse_query(qm + 1, out, 0, err, errlen) : 0;
}

static int parse_unix(const char *p, struct store_url *out, char *err, size_t errlen)
{
	const char *qm = strchr(p, '?');
	size_t n = qm != NULL ? (size_t)(qm - p) : strlen(p);

	if (*p != '/')
		return fail(err, errlen, "redis+unix:// needs an absolute socket path "
				       "(redis+unix:///path/redis.sock)");
	if (copy_to(out->path, sizeof out->path, p, n) != 0)
		return fail(err, errlen, "socket path too long");
	return qm != NULL ? parse_query(qm + 1, out, 1, err, errlen) : 0;
}

int store_url_parse(const char *url, struct store_url *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (url == NULL || url[0] == '\0')
		return fail(err, errlen, "empty");
	if (starts(url, "redis://")) {
		out->kind = STORE_REDIS_TCP;
		return parse_tcp(url + strlen("redis://"), out, err, errlen);
	}
	if (starts(url, "redis+sentinel://")) {
		out->kind = STORE_REDIS_SENTINEL;
		return parse_sentinel(url + strlen("redis+sentinel://"), out, err, errlen);
	}
	if (starts(url, "redis+unix://")) {
		out->kind = STORE_REDIS_UNIX;
		return parse_unix(url + strlen("redis+unix://"), out, err, errlen);
	}
	out->kind = STORE_SQLITE;
	if (starts(url, "sqlite://")) {
		url += strlen("sqlite://");
		if (*url != '/')
			return fail(err, errlen, "sqlite:// needs an absolute path (sqlite:///path/pending.db)");
	} else if (strstr(url, "://") != NULL) {
		return fail(err, errlen, "unknown scheme (sqlite://, redis://, redis+unix://, "
				       "redis+sentinel:// are known)");
	}
	if (copy_to(out->path, sizeof out->path, url, strlen(url)) != 0)
		return fail(err, errlen, "path too long");
	return 0;
}
