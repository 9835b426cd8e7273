/* store_sqlite_file.c — the SQLite backend's file: the checks of its directory, its modes, the
 * lock taken to (re)create it, the journal a removed file left behind, the detection of a file
 * removed or replaced while in use, the connection's settings, the schema's creation and
 * migration; and the methods of sqlite_store_ops that open, check and close a handle. The
 * queries are store_sqlite.c's. */
#define _GNU_SOURCE
#include "store_sqlite_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static const char schema_sql[] =
#include "schema.inc"
	;

/* The file this process last opened at its path, so that a removal or replacement is logged
 * and counted once per process, by the first handle that meets it, not once per thread. */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static char process_path[PATH_MAX];
static dev_t process_dev;
static ino_t process_ino;
static atomic_long reopens;

const char *sqlite_store_strerror(const void *h)
{
	const struct sqlite_store *s = h;

	return s->err;
}

/* The busy handler of every connection open_db() makes: waits for another process's lock (the
 * thread holding store_sqlite.c's write turn is the only one that meets it) with a backoff
 * from 10 µs doubling to 1 ms: a writer's transaction is short, so most waits end at once, and
 * long ones do not spin. sqlite3_busy_timeout() sleeps in whole milliseconds, far longer than
 * a transaction, which would stretch the tail latency (docs/performance.md). */
static int busy_wait(void *arg, int tries)
{
	struct sqlite_store *s = arg;
	int64_t now = clock_mono_ms();
	struct timespec ts = { 0, 1000000 };

	if (tries == 0)
		s->busy_since_ms = now;
	if (now - s->busy_since_ms >= STORE_BUSY_TIMEOUT_MS)
		return 0;
	if (tries < 7)
		ts.tv_nsec = 10000L << tries;
	nanosleep(&ts, NULL);
	return 1;
}

static void close_db(struct sqlite_store *s)
{
	int i;

	for (i = 0; i < ST_COUNT_; i++) {
		sqlite3_finalize(s->stmts[i]);
		s->stmts[i] = NULL;
	}
	sqlite3_close(s->db);
	s->db = NULL;
}

static int exec_retrying(struct sqlite_store *s, const char *sql, const char *what)
{
	int attempt, rc = SQLITE_ERROR;

	/* another process creating the schema at the same moment may hold the lock longer
	 * than the busy handler waits on a cold start: try a few times */
	for (attempt = 0; attempt < 5; attempt++) {
		rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
			break;
	}
	if (rc != SQLITE_OK) {
		set_db_err(s, what);
		return -1;
	}
	return 0;
}

/* Before schema.sql, on a version 1 or 2 file: the one-row-per-event table makes way for
 * rate_log (and the view that takes its name), its triggers and indexes go with it. */
static const char migrate_events_before_sql[] =
	"DROP TRIGGER IF EXISTS rate_events_counted;"
	"DROP TRIGGER IF EXISTS rate_events_uncounted;"
	"DROP INDEX IF EXISTS rate_events_by_subject;"
	"DROP INDEX IF EXISTS rate_events_by_time;"
	"ALTER TABLE rate_events RENAME TO rate_events_before_v3;";

/* After schema.sql, on a version 1 or 2 file: the events move to rate_log, one row per
 * millisecond, and are counted afresh; version 1's 'send' events go (the send
 * queue replaced them), and its one pause of every kind becomes one pause per kind. */
static const char migrate_events_after_sql[] =
	"INSERT INTO rate_log (scope, subject, at_ms, events) "
	"  SELECT scope, subject, at_ms, count(*) FROM rate_events_before_v3 "
	"  WHERE scope <> 'send' GROUP BY scope, subject, at_ms;"
	"DELETE FROM rate_counts;"
	"INSERT INTO rate_counts (scope, subject, events) "
	"  SELECT scope, subject, sum(events) FROM rate_log GROUP BY scope, subject;"
	"DROP TABLE rate_events_before_v3;"
	"CREATE TABLE IF NOT EXISTS telegram_pause (id INTEGER PRIMARY KEY, "
	"  until_ms INTEGER NOT NULL, set_by TEXT NOT NULL);"
	"INSERT OR IGNORE INTO telegram_pauses (kind, until_ms, set_by) "
	"  SELECT k.kind, p.until_ms, p.set_by FROM telegram_pause p, "
	"  (SELECT 'send' AS kind UNION ALL SELECT 'delete') k;"
	"DROP TABLE telegram_pause;";

/* Before schema.sql, on a file older than version 4: pending_deletions makes way for the table
 * with chat_key and owner (rebuilt rather than altered, so that a migrated file has the very
 * schema a new one has); its index and the view reading it go with it. */
static const char migrate_pending_before_sql[] =
	"DROP VIEW IF EXISTS pending_deletions_readable;"
	"DROP INDEX IF EXISTS pending_deletions_by_next_try;"
	"ALTER TABLE pending_deletions RENAME TO pending_deletions_before_v4;";

/* After schema.sql, on a file older than version 4: the rows move over, each with its chat key
 * (the rule of policy_chat_key(), here once for the rows written before it existed; an
 * @username is ASCII, so lower() folds it as tolower() does) and no owner (sent before
 * ownership was recorded). */
static const char migrate_pending_after_sql[] =
	"INSERT INTO pending_deletions (id, chat_id, chat_key, message_id, delete_at_ms, "
	"  next_try_ms, attempts, created_at_ms, owner) "
	"  SELECT id, chat_id, CASE WHEN substr(chat_id, 1, 1) = '@' THEN lower(chat_id) "
	"  ELSE chat_id END, message_id, delete_at_ms, next_try_ms, attempts, created_at_ms, NULL "
	"  FROM pending_deletions_before_v4;"
	"DROP TABLE pending_deletions_before_v4;";

/* The schema version of the file, or -1. */
static int schema_version(struct sqlite_store *s)
{
	sqlite3_stmt *st = NULL;
	int v = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (v < 0)
		set_db_err(s, "read the schema version");
	return v;
}

/* Creates the schema, or migrates an older one in place. The version is read inside the write
 * transaction: two processes opening an old file at once migrate it once. */
static int create_schema(struct sqlite_store *s)
{
	char sql[sizeof schema_sql + sizeof migrate_events_before_sql +
		 sizeof migrate_events_after_sql + sizeof migrate_pending_before_sql +
		 sizeof migrate_pending_after_sql + 64];
	int version, old, pre_v4;

	/* a small WAL, checkpointed often and cut back after each checkpoint: on tmpfs the file
	 * is memory, and it otherwise keeps the largest size it ever reached */
	if (exec_retrying(s, "PRAGMA journal_mode=WAL", "enable WAL") != 0 ||
	    exec_retrying(s, "PRAGMA synchronous=NORMAL", "set synchronous") != 0 ||
	    exec_retrying(s, "PRAGMA wal_autocheckpoint=64", "set wal_autocheckpoint") != 0 ||
	    exec_retrying(s, "PRAGMA journal_size_limit=262144", "set journal_size_limit") != 0 ||
	    exec_retrying(s, "BEGIN IMMEDIATE", "begin creating the schema") != 0)
		return -1;
	if ((version = schema_version(s)) < 0)
		goto fail;
	if (version > STORE_SCHEMA_VERSION) {
		set_err(s, "%s has schema version %d, newer than this program's %d", s->path,
			version, STORE_SCHEMA_VERSION);
		goto fail;
	}
	old = version == 1 || version == 2;
	pre_v4 = version >= 1 && version < 4; /* 0: a new file, nothing to move */
	snprintf(sql, sizeof sql, "%s %s %s %s %s PRAGMA user_version = %d;",
		 old ? migrate_events_before_sql : "", pre_v4 ? migrate_pending_before_sql : "",
		 schema_sql, old ? migrate_events_after_sql : "",
		 pre_v4 ? migrate_pending_after_sql : "", STORE_SCHEMA_VERSION);
	if (exec_retrying(s, sql, "create schema") != 0 ||
	    exec_retrying(s, "COMMIT", "commit the schema") != 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* The directory holding the database must be ours alone: another user who may write it could
 * read, remove or replace the file, or hold its lock. */
int store_check_db_dir(const char *db_path, char *err, size_t errlen)
{
	char copy[PATH_MAX], *dir;
	struct stat st;

	if (snprintf(copy, sizeof copy, "%s", db_path) >= (int)sizeof copy) {
		snprintf(err, errlen, "database path too long");
		return -1;
	}
	dir = dirname(copy);
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "database directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "database directory %s is not a directory", dir);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen,
			 "database directory %s belongs to uid %u, not to this process's uid %u: "
			 "refusing it (its owner could read, replace or lock the database)",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -1;
	}
	/* a directory others share (/dev/shm, /tmp) is the common case: the fix is a private
	 * directory in it, never a change to its mode (which would break every other user) */
	if ((st.st_mode & (S_IWOTH | S_ISVTX)) != 0) {
		snprintf(err, errlen,
			 "database directory %s is writable by its group or others (mode %04o): "
			 "refusing it; make a private directory in it (mkdir -m 0700 "
			 "%s/otp-gateway) and set OTP_DB_PATH to a file there; never change the "
			 "mode of a directory others share",
			 dir, (unsigned)(st.st_mode & 07777), dir);
		return -1;
	}
	if ((st.st_mode & S_IWGRP) != 0) {
		snprintf(err, errlen,
			 "database directory %s is writable by its group or others (mode %04o): "
			 "refusing it (its group could replace the database); use a directory only "
			 "this user may write (chmod g-w %s if it is this service's own)",
			 dir, (unsigned)(st.st_mode & 07777), dir);
		return -1;
	}
	return 0;
}

static int check_dir(struct sqlite_store *s)
{
	return store_check_db_dir(s->path, s->err, sizeof s->err);
}

/* Creates the database file 0600 before SQLite does (SQLite would make it 0644 less the umask,
 * and gives its -wal and -shm files the database's mode), and takes back a file or a -wal/-shm
 * left more open than that. An existing file is never opened here: closing a descriptor of a
 * file drops every POSIX lock this process holds on it, SQLite's included. */
static int make_private(struct sqlite_store *s)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char p[PATH_MAX];
	struct stat st;
	size_t i;
	int fd;

	fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd); /* a new inode: no lock of ours can be on it */
	else if (errno != EEXIST) {
		set_err(s, "create %s: %s", s->path, strerror(errno));
		return -1;
	}
	for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		if (snprintf(p, sizeof p, "%s%s", s->path, suffixes[i]) >= (int)sizeof p) {
			set_err(s, "database path too long");
			return -1;
		}
		if (stat(p, &st) != 0) {
			if (errno == ENOENT)
				continue;
			set_err(s, "stat %s: %s", p, strerror(errno));
			return -1;
		}
		if ((st.st_mode & 077) != 0 && chmod(p, 0600) != 0) {
			set_err(s, "make %s private (0600): %s", p, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Opens (creating 0600) PATH.lock and takes its lock: whoever (re)creates the database holds
 * it. The file records the (device, inode) of the database that PATH-wal and PATH-shm belong
 * to. Returns the fd, or -1. */
static int lock_opening(struct sqlite_store *s)
{
	char p[PATH_MAX];
	int fd;

	if (snprintf(p, sizeof p, "%s.lock", s->path) >= (int)sizeof p) {
		set_err(s, "database path too long");
		return -1;
	}
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		set_err(s, "open %s: %s", p, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX) != 0) {
		set_err(s, "lock %s: %s", p, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* After the database was removed (or replaced), PATH-wal and PATH-shm still belong to the old
 * file, and processes that have not noticed yet still use them: a new database opened beside
 * them would read the old file's pages from them ("disk I/O error", "malformed"). Unlinks them
 * when the database is missing, or is not the file the lock file says they belong to. The
 * processes still on the old file keep their descriptors and go on undisturbed until they
 * notice. With no record (a first start, a crash), a -wal is trusted: it may hold committed
 * rows. */
static int drop_stale_journal(struct sqlite_store *s, int lock_fd)
{
	static const char *const suffixes[] = { "-wal", "-shm" };
	char rec[64] = "", p[PATH_MAX];
	unsigned long long dev = 0, ino = 0;
	struct stat st;
	ssize_t n;
	size_t i;
	int stale;

	n = pread(lock_fd, rec, sizeof rec - 1, 0);
	if (n > 0)
		rec[n] = '\0';
	if (stat(s->path, &st) != 0) {
		if (errno != ENOENT) {
			set_err(s, "stat %s: %s", s->path, strerror(errno));
			return -1;
		}
		stale = 1;
	} else {
		stale = sscanf(rec, "%llu %llu", &dev, &ino) == 2 &&
			(dev != (unsigned long long)st.st_dev || ino != (unsigned long long)st.st_ino);
	}
	if (!stale)
		return 0;
	for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		snprintf(p, sizeof p, "%s%s", s->path, suffixes[i]);
		if (unlink(p) != 0 && errno != ENOENT) {
			set_err(s, "remove the stale %s: %s", p, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Writes which database PATH-wal and PATH-shm now belong to. */
static int record_journal_owner(struct sqlite_store *s, int lock_fd)
{
	char rec[64];
	int n = snprintf(rec, sizeof rec, "%llu %llu\n", (unsigned long long)s->dev,
			 (unsigned long long)s->ino);

	if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, rec, (size_t)n, 0) != n) {
		set_err(s, "write %s.lock: %s", s->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Logs and counts a replaced file once per process: the first handle to open the new file. */
static void note_file(const struct sqlite_store *s)
{
	int replaced = 0;

	pthread_mutex_lock(&file_lock);
	if (strcmp(process_path, s->path) != 0) {
		snprintf(process_path, sizeof process_path, "%s", s->path);
	} else if (process_dev != s->dev || process_ino != s->ino) {
		replaced = 1;
		atomic_fetch_add(&reopens, 1);
	}
	process_dev = s->dev;
	process_ino = s->ino;
	pthread_mutex_unlock(&file_lock);
	if (replaced)
		log_msg(LOG_ERROR, "the database %s was removed or replaced while in use: reopened "
				   "it; rows only the old file held (pending deletions, rate-limit "
				   "events) are lost", s->path);
}

long store_reopens_take(void)
{
	return atomic_exchange(&reopens, 0);
}

/* No bulk page-cache allocation per connection (held for the connection's life, and a process
 * keeps a pool of them): pages are allocated as a transaction needs them. Must precede
 * SQLite's initialisation; later, SQLite refuses it harmlessly. */
static void configure_sqlite(void)
{
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

static int open_db(struct sqlite_store *s)
{
	static pthread_once_t configured = PTHREAD_ONCE_INIT;

	struct stat st;
	int rc, lock_fd;

	if (check_dir(s) != 0 || (lock_fd = lock_opening(s)) < 0)
		return -1;
	if (drop_stale_journal(s, lock_fd) != 0 || make_private(s) != 0)
		goto fail;
	pthread_once(&configured, configure_sqlite);
	rc = sqlite3_open_v2(s->path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(s, "open %s: %s", s->path,
			s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_handler(s->db, busy_wait, s);
	/* a small page cache: each process keeps a pool of connections, another connection's
	 * write empties the cache before our next transaction anyway, and the pages come from
	 * tmpfs */
	if (exec_retrying(s, "PRAGMA cache_size=-128", "set cache_size") != 0 ||
	    create_schema(s) != 0)
		goto fail;
	if (stat(s->path, &st) != 0) {
		set_err(s, "stat %s: %s", s->path, strerror(errno));
		goto fail;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (record_journal_owner(s, lock_fd) != 0)
		goto fail;
	close(lock_fd);
	note_file(s);
	return 0;
fail:
	close(lock_fd);
	close_db(s);
	return -1;
}

/* Closes a handle on a file that is no longer at the path without touching the path: a last
 * close would checkpoint and unlink PATH-wal and PATH-shm by name, and they may be the new
 * file's by now. */
static void close_stale(struct sqlite_store *s)
{
	int one = 1;

	if (s->db != NULL) {
		sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
		sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
	}
	close_db(s);
}

/* One stat(2), on every call. */
int sqlite_store_ensure_current(struct sqlite_store *s)
{
	struct stat st;

	if (s->db != NULL && stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		return 0;
	close_stale(s);
	return open_db(s);
}

int sqlite_store_check_file(void *h)
{
	struct sqlite_store *s = h;
	int was_open = s->db != NULL;
	dev_t dev = s->dev;
	ino_t ino = s->ino;

	if (sqlite_store_ensure_current(s) != 0)
		return -1;
	return was_open && (dev != s->dev || ino != s->ino);
}

void sqlite_store_close(void *h)
{
	struct sqlite_store *s = h;
	struct stat st;

	if (s == NULL)
		return;
	/* a last close checkpoints and unlinks PATH-wal by name: only for our own file */
	if (s->db != NULL && (stat(s->path, &st) != 0 || st.st_dev != s->dev || st.st_ino != s->ino))
		close_stale(s);
	close_db(s);
	free(s->path);
	free(s);
}

void *sqlite_store_open(const struct store_url *u, const struct store_config *c, char *err,
			size_t errlen)
{
	struct sqlite_store *s = calloc(1, sizeof *s);

	(void)c; /* nothing to set but the path */
	if (s == NULL || (s->path = strdup(u->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	if (open_db(s) != 0) {
		snprintf(err, errlen, "%s", s->err);
		sqlite_store_close(s);
		return NULL;
	}
	return s;
}

int sqlite_store_is_on_tmpfs(const void *h)
{
	const struct sqlite_store *s = h;
	struct statfs sf;

	if (statfs(s->path, &sf) != 0)
		return -1;
	return (unsigned long)sf.f_type == 0x01021994UL;
}
