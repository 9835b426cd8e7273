/* store_sqlite_conn.h — what the two halves of the SQLite backend share, and nothing else
 * includes: the handle, its errors, and the calls between the file's lifecycle
 * (store_sqlite_file.c) and the queries with the method table (store_sqlite.c). */
#ifndef OTP_STORE_SQLITE_CONN_H
#define OTP_STORE_SQLITE_CONN_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "store_backend.h"

/* The statements store_sqlite.c prepares once per handle (its stmt_sql holds their text); the
 * handle finalizes them when its connection closes. */
enum stmt_id {
	ST_RATE_PRUNE_SUBJECT,
	ST_RATE_COUNT,
	ST_RATE_OLDEST,
	ST_RATE_ADD,
	ST_RATE_COUNT_UP,
	ST_RATE_COUNT_NEW,
	ST_RATE_COUNT_DOWN,
	ST_RATE_TAKE_BACK,
	ST_RATE_DROP_EMPTY,
	ST_RATE_EXPIRED,
	ST_RATE_PRUNE_SCOPE,
	ST_QUEUE_GET,
	ST_QUEUE_SET,
	ST_PENDING_ADD,
	ST_PENDING_DUE,
	ST_PENDING_NEXT,
	ST_PENDING_LAST,
	ST_PENDING_COUNT,
	ST_PENDING_REMOVE,
	ST_PENDING_RETRY,
	ST_HEARTBEAT_SET,
	ST_HEARTBEAT_GET,
	ST_PAUSE_EXTEND,
	ST_PAUSE_GET,
	ST_METRIC_ADD,
	ST_METRIC_READ,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNT_
};

/* A handle: one connection to the file at path, the statements prepared on it, its last error. */
struct sqlite_store {
	sqlite3 *db;
	char *path;
	dev_t dev; /* the file this handle has open */
	ino_t ino;
	int64_t busy_since_ms; /* when busy_wait() began waiting */
	int writing; /* holds store_sqlite.c's write_lock: from begin() to commit() or rollback() */
	sqlite3_stmt *stmts[ST_COUNT_];
	char err[512];
};

static inline void set_err(struct sqlite_store *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void set_err(struct sqlite_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
}

static inline void set_db_err(struct sqlite_store *s, const char *what)
{
	set_err(s, "%s: %s (%s)", what, sqlite3_errmsg(s->db), s->path);
}

/* store_sqlite_file.c: the methods of sqlite_store_ops about the handle and its file, with the
 * contracts of their store_* namesakes in store.h. */
void *sqlite_store_open(const struct store_url *u, const struct store_config *c, char *err,
			size_t errlen);
void sqlite_store_close(void *h);
const char *sqlite_store_strerror(const void *h);
int sqlite_store_check_file(void *h);
int sqlite_store_is_on_tmpfs(const void *h);

/* Reopens the path when the file the handle holds was removed or replaced (or the handle holds
 * none): called before each use, since writing on into an unlinked file would succeed where no
 * other process sees it. 0, or -1 with the reason in s->err. */
int sqlite_store_ensure_current(struct sqlite_store *s);

#endif
