/* store_sqlite.c — the SQLite backend of store.h: its queries (the rate limits, the send queue,
 * pending deletions, pauses, metrics, heartbeats, the claim), the transactions and the write
 * turns they run in, and sqlite_store_ops (store_backend.h). The file under them (opening,
 * checks, replacement, the schema) is store_sqlite_file.c's; these two files, through
 * store_sqlite_conn.h, are the only ones that speak SQL or include sqlite3.h. */
#define _GNU_SOURCE
#include "store_sqlite_conn.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static const char *const stmt_sql[ST_COUNT_] = {
	[ST_RATE_PRUNE_SUBJECT] =
		"DELETE FROM rate_log WHERE scope = ?1 AND subject = ?2 AND at_ms <= ?3",
	/* kept with each event (and by a trigger on deletion, schema.sql): one row read, however
	 * many events the window holds */
	[ST_RATE_COUNT] = "SELECT events FROM rate_counts WHERE scope = ?1 AND subject = ?2",
	[ST_RATE_OLDEST] = "SELECT at_ms, events FROM rate_log WHERE scope = ?1 AND subject = ?2 "
			   "ORDER BY at_ms",
	/* a busy subject's requests in one millisecond update one row */
	[ST_RATE_ADD] = "INSERT INTO rate_log (scope, subject, at_ms, events) VALUES (?1, ?2, ?3, 1) "
			"ON CONFLICT (scope, subject, at_ms) DO UPDATE SET events = events + 1",
	/* the count row of an event added: rate_add() knows whether it exists (no trigger) */
	[ST_RATE_COUNT_UP] = "UPDATE rate_counts SET events = events + 1 "
			     "WHERE scope = ?1 AND subject = ?2",
	[ST_RATE_COUNT_NEW] = "INSERT INTO rate_counts (scope, subject, events) VALUES (?1, ?2, 1) "
			      "ON CONFLICT (scope, subject) DO UPDATE SET events = events + 1",
	[ST_RATE_COUNT_DOWN] = "UPDATE rate_counts SET events = events - 1 "
			       "WHERE scope = ?1 AND subject = ?2",
	[ST_RATE_TAKE_BACK] = "UPDATE rate_log SET events = events - 1 "
			      "WHERE scope = ?1 AND subject = ?2 AND at_ms = ?3",
	[ST_RATE_DROP_EMPTY] = "DELETE FROM rate_log "
			       "WHERE scope = ?1 AND subject = ?2 AND at_ms = ?3 AND events <= 0",
	[ST_RATE_EXPIRED] = "SELECT coalesce(sum(events), 0) FROM rate_log "
			    "WHERE scope = ?1 AND at_ms <= ?2",
	[ST_RATE_PRUNE_SCOPE] = "DELETE FROM rate_log WHERE scope = ?1 AND at_ms <= ?2",
	[ST_QUEUE_GET] = "SELECT next_us FROM send_queue WHERE id = 1",
	[ST_QUEUE_SET] = "INSERT INTO send_queue (id, next_us) VALUES (1, ?1) "
			 "ON CONFLICT (id) DO UPDATE SET next_us = ?1",
	[ST_PENDING_ADD] = "INSERT INTO pending_deletions (chat_id, message_id, delete_at_ms, "
			   "next_try_ms, created_at_ms, chat_key, owner) "
			   "VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
	[ST_PENDING_DUE] = "SELECT id, chat_id, message_id, delete_at_ms, next_try_ms, attempts "
			   "FROM pending_deletions WHERE next_try_ms <= ?1 "
			   "ORDER BY next_try_ms LIMIT ?2",
	[ST_PENDING_NEXT] = "SELECT min(next_try_ms) FROM pending_deletions",
	[ST_PENDING_LAST] = "SELECT max(next_try_ms) FROM pending_deletions",
	[ST_PENDING_COUNT] = "SELECT count(*) FROM pending_deletions",
	[ST_PENDING_REMOVE] = "DELETE FROM pending_deletions WHERE id = ?1",
	[ST_PENDING_RETRY] = "UPDATE pending_deletions SET attempts = attempts + 1, "
			     "next_try_ms = max(?2, delete_at_ms) WHERE id = ?1",
	[ST_HEARTBEAT_SET] = "INSERT INTO heartbeats (program, pid, beat_ms) VALUES (?1, ?2, ?3) "
			     "ON CONFLICT (program) DO UPDATE SET pid = ?2, beat_ms = ?3",
	[ST_HEARTBEAT_GET] = "SELECT beat_ms FROM heartbeats WHERE program = ?1",
	[ST_PAUSE_EXTEND] = "INSERT INTO telegram_pauses (kind, until_ms, set_by) "
			    "VALUES (?1, ?2, ?3) ON CONFLICT (kind) DO UPDATE SET until_ms = ?2, set_by = ?3 "
			    "WHERE until_ms < ?2",
	[ST_PAUSE_GET] = "SELECT until_ms FROM telegram_pauses WHERE kind = ?1",
	[ST_METRIC_ADD] = "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3) "
			  "ON CONFLICT (name, labels) DO UPDATE SET value = value + ?3",
	[ST_METRIC_READ] = "SELECT name, labels, value FROM metrics",
	/* IMMEDIATE: a deferred transaction that later writes fails with SQLITE_BUSY under load */
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

/* The threads of one process take turns to write: a thread waits here, asleep, instead of
 * polling SQLite's lock; only the one holding this mutex can meet another process's lock (and
 * wait for it in the connection's busy handler, store_sqlite_file.c). */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* The prepared statement, reset and unbound, ready for binding. */
static sqlite3_stmt *stmt(struct sqlite_store *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->stmts[id];

	if (st == NULL) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st,
				       NULL) != SQLITE_OK) {
			set_db_err(s, "prepare");
			return NULL;
		}
		s->stmts[id] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
static int step_done(struct sqlite_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		set_db_err(s, what);
		return -1;
	}
	return 0;
}

/* Runs a statement expected to yield one integer (NULL counts as absent).
 * Returns 1 with *out set, 0 if no row or NULL, -1 on error. */
static int step_int64(struct sqlite_store *s, sqlite3_stmt *st, int64_t *out, const char *what)
{
	int rc = sqlite3_step(st), found = 0;

	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*out = sqlite3_column_int64(st, 0);
		found = 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		set_db_err(s, what);
		return -1;
	}
	return found;
}

static void end_write(struct sqlite_store *s)
{
	if (s->writing) {
		s->writing = 0;
		pthread_mutex_unlock(&write_lock);
	}
}

/* Takes this process's write turn, waiting at most STORE_BUSY_TIMEOUT_MS: a thread whose turn
 * never comes (the holder waits on another process's lock) fails like a busy database instead
 * of queueing without bound. */
static int take_write_turn(struct sqlite_store *s)
{
	struct timespec until;
	int rc;

	clock_gettime(CLOCK_REALTIME, &until); /* pthread_mutex_timedlock's clock */
	until.tv_sec += STORE_BUSY_TIMEOUT_MS / 1000;
	until.tv_nsec += (long)(STORE_BUSY_TIMEOUT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	rc = pthread_mutex_timedlock(&write_lock, &until);
	if (rc != 0) {
		set_err(s, "database busy: no write turn within %d ms (%s)", STORE_BUSY_TIMEOUT_MS,
			s->path);
		return -1;
	}
	s->writing = 1;
	return 0;
}

static int begin(struct sqlite_store *s)
{
	sqlite3_stmt *st;

	if (sqlite_store_ensure_current(s) != 0 || take_write_turn(s) != 0)
		return -1;
	if ((st = stmt(s, ST_BEGIN)) == NULL || step_done(s, st, "begin transaction") != 0) {
		end_write(s);
		return -1;
	}
	return 0;
}

static void rollback(struct sqlite_store *s)
{
	if (s->db != NULL && sqlite3_get_autocommit(s->db) == 0)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	end_write(s);
}

/* Commits; on failure rolls back. Either way the write lock is released. */
static int commit(struct sqlite_store *s)
{
	sqlite3_stmt *st = stmt(s, ST_COMMIT);

	if (st == NULL || step_done(s, st, "commit") != 0) {
		rollback(s);
		return -1;
	}
	end_write(s);
	return 0;
}

/* Runs the one-parameter statement id for each of ids[0..n) in one transaction. */
static int delete_ids(struct sqlite_store *s, enum stmt_id id, const int64_t *ids, int n, const char *what)
{
	sqlite3_stmt *st;
	int i;

	if (n == 0)
		return 0;
	if (begin(s) != 0)
		return -1;
	for (i = 0; i < n; i++) {
		if ((st = stmt(s, id)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, ids[i]);
		if (step_done(s, st, what) != 0)
			goto fail;
	}
	if (commit(s) != 0)
		goto fail;
	return 0;
fail:
	rollback(s);
	return -1;
}

/* Binds a rule's scope and subject as ?1 and ?2 of statement id; NULL on failure. */
static sqlite3_stmt *rule_stmt(struct sqlite_store *s, enum stmt_id id, const char *scope,
			       const char *subject)
{
	sqlite3_stmt *st = stmt(s, id);

	if (st != NULL) {
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
	}
	return st;
}

/* The number of events a rule's subject holds, expired ones included: one row read. */
static int rate_held(struct sqlite_store *s, const struct store_rate_rule *r, int64_t *count)
{
	sqlite3_stmt *st = rule_stmt(s, ST_RATE_COUNT, r->scope, r->subject);

	*count = 0;
	return st == NULL || step_int64(s, st, count, "count rate events") < 0 ? -1 : 0;
}

/* The time of the (skip + 1)-th oldest event of a rule's subject (0 if it holds fewer). */
static int rate_nth_oldest(struct sqlite_store *s, const struct store_rate_rule *r, int64_t skip,
			   int64_t *at_ms)
{
	sqlite3_stmt *st = rule_stmt(s, ST_RATE_OLDEST, r->scope, r->subject);
	int rc;

	*at_ms = 0;
	if (st == NULL)
		return -1;
	/* skip is 0 unless a limit was lowered below what its log already holds */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		skip -= sqlite3_column_int64(st, 1);
		if (skip < 0) {
			*at_ms = sqlite3_column_int64(st, 0);
			break;
		}
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		set_db_err(s, "find oldest rate event");
		return -1;
	}
	return 0;
}

/* Tells whether a rule has a free place; if not, the time of the event whose expiry frees one.
 * Below the limit, counting the expired events too, a place is free whatever expired: only a
 * subject at its limit has its expired events dropped here (otp-deleter's sweep drops the
 * others), so that a busy subject far below its limit costs one row read. */
static int rate_check(struct sqlite_store *s, const struct store_rate_rule *r, int64_t *count,
		      int *full, int64_t *freeing_at_ms)
{
	sqlite3_stmt *st;

	*full = 0;
	if (rate_held(s, r, count) != 0)
		return -1;
	if (*count < r->limit)
		return 0;
	if ((st = rule_stmt(s, ST_RATE_PRUNE_SUBJECT, r->scope, r->subject)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 3, r->expired_ms);
	if (step_done(s, st, "prune rate events") != 0 || rate_held(s, r, count) != 0)
		return -1;
	if (*count < r->limit)
		return 0;
	/* a place frees when the (count - limit + 1)-th oldest event expires */
	if (rate_nth_oldest(s, r, *count - r->limit, freeing_at_ms) != 0)
		return -1;
	*full = 1;
	return 0;
}

/* Counts one event of rule r at at_ms in a subject that held `held` events, and names its row in
 * v for store_rate_release() (on any handle: otp-fcgi's threads share a pool of them). The
 * count row is written here, not by a trigger: held tells whether to update it or create it,
 * so a busy subject's event costs two row updates. */
static int rate_add(struct sqlite_store *s, const struct store_rate_rule *r, int64_t held,
		    int64_t at_ms, struct store_rate_verdict *v)
{
	struct store_rate_event *t = &v->slot_events[v->nslots];
	sqlite3_stmt *st;

	if (snprintf(t->scope, sizeof t->scope, "%s", r->scope) >= (int)sizeof t->scope ||
	    snprintf(t->subject, sizeof t->subject, "%s", r->subject) >= (int)sizeof t->subject) {
		set_err(s, "rate-limit subject too long: %.40s...", r->subject);
		return -1;
	}
	if ((st = rule_stmt(s, ST_RATE_ADD, r->scope, r->subject)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 3, at_ms);
	if (step_done(s, st, "insert rate event") != 0)
		return -1;
	if (held > 0) {
		st = rule_stmt(s, ST_RATE_COUNT_UP, r->scope, r->subject);
		if (st == NULL || step_done(s, st, "count rate event") != 0)
			return -1;
	}
	if (held <= 0 || sqlite3_changes(s->db) == 0) {
		st = rule_stmt(s, ST_RATE_COUNT_NEW, r->scope, r->subject);
		if (st == NULL || step_done(s, st, "count rate event") != 0)
			return -1;
	}
	t->at_ms = at_ms;
	v->slot_ids[v->nslots] = v->nslots + 1;
	v->nslots++;
	return 0;
}

/* The instant the send queue gives a request: the later of now, the queue's next free instant
 * and the end of the pause that holds the queue. Sets v->slot_us and v->slot_refused; moves the
 * queue when the slot is taken. */
static int reserve_slot(struct sqlite_store *s, const struct store_slot_request *q,
			struct store_rate_verdict *v)
{
	sqlite3_stmt *st;
	int64_t next = q->now_us, pause_ms = 0, at;

	if ((st = stmt(s, ST_QUEUE_GET)) == NULL || step_int64(s, st, &next, "read send queue") < 0)
		return -1;
	if (next > q->reset_after_us)
		next = q->now_us;
	at = next > q->now_us ? next : q->now_us;
	if (q->pause_kind != NULL) {
		if ((st = stmt(s, ST_PAUSE_GET)) == NULL)
			return -1;
		sqlite3_bind_text(st, 1, q->pause_kind, -1, SQLITE_STATIC);
		if (step_int64(s, st, &pause_ms, "read Telegram's pause") < 0)
			return -1;
		if (pause_ms > q->pause_cap_us / 1000)
			pause_ms = q->pause_cap_us / 1000; /* a hand-written row */
		if (pause_ms * 1000 > at) {
			at = pause_ms * 1000;
			v->slot_paused = 1;
		}
	}
	v->slot_us = at;
	if (at > q->latest_us) {
		v->slot_refused = 1;
		return 0;
	}
	if ((st = stmt(s, ST_QUEUE_SET)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, at + q->spacing_us);
	return step_done(s, st, "write send queue");
}

/* One thread's store_rate_take(), waiting to be written with the others' (take_batch()). On its
 * thread's stack; the fields below next are the answer. */
struct take_req {
	const char *path;        /* the database it is for: a batch holds one file's requests */
	const struct store_rate_rule *rules;
	int nrules;
	const struct store_slot_request *slot;
	int64_t now_ms;
	struct store_rate_verdict *v;
	struct take_req *next;
	int done, rc;
	char err[512];
};

/* The most requests in one transaction: every thread of a process, and a bound on how long one
 * commit keeps other processes waiting. */
#define TAKE_BATCH_MAX 64

static pthread_mutex_t take_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t take_answered = PTHREAD_COND_INITIALIZER;
static struct take_req *take_head, **take_tail = &take_head;
static int take_writing; /* a thread is writing a batch */

/* store_rate_take()'s checks and writes for r, inside the open transaction. Returns 0 (whatever
 * the verdict) or -1. */
static int take_in(struct sqlite_store *s, const struct take_req *r)
{
	const struct store_slot_request *slot = r->slot;
	struct store_rate_verdict *v = r->v;
	int64_t held[STORE_RATE_RULES_MAX];
	sqlite3_stmt *st;
	int i, full;

	if (slot != NULL && slot->beat_program != NULL) {
		if ((st = stmt(s, ST_HEARTBEAT_GET)) == NULL)
			return -1;
		sqlite3_bind_text(st, 1, slot->beat_program, -1, SQLITE_STATIC);
		if ((v->beat_found = step_int64(s, st, &v->beat_ms, "read heartbeat")) < 0)
			return -1;
		if (!v->beat_found || v->beat_ms < slot->beat_after_ms ||
		    v->beat_ms > slot->beat_before_ms) {
			v->beat_refused = 1;
			return 0;
		}
	}
	for (i = 0; i < r->nrules; i++) {
		if (rate_check(s, &r->rules[i], &held[i], &full, &v->freeing_at_ms) != 0)
			return -1;
		if (full) {
			v->refused_rule = i;
			return 0; /* committed with the batch: keeps the pruning */
		}
	}
	if (slot != NULL) {
		if (reserve_slot(s, slot, v) != 0)
			return -1;
		if (v->slot_refused)
			return 0;
	}
	for (i = 0; i < r->nrules; i++)
		if (rate_add(s, &r->rules[i], held[i], r->now_ms, v) != 0)
			return -1;
	return 0;
}

/* Fails r with s's reason: nothing it took stays. */
static void take_fail(struct sqlite_store *s, struct take_req *r)
{
	r->rc = -1;
	r->v->nslots = 0;
	snprintf(r->err, sizeof r->err, "%s", s->err);
}

/* Writes up to TAKE_BATCH_MAX queued requests for s's file in one transaction on s, each in a
 * savepoint of its own: a request that fails is undone alone and answered -1, the others go on;
 * when the transaction itself fails (begin, commit, or an error that ends it) every request of
 * the batch is answered -1. Called by the one thread writing (take_writing), without take_lock. */
static void take_batch(struct sqlite_store *s)
{
	struct take_req *batch[TAKE_BATCH_MAX], **pp;
	int i, j, n = 0;

	pthread_mutex_lock(&take_lock);
	for (pp = &take_head; *pp != NULL && n < TAKE_BATCH_MAX;) {
		if (strcmp((*pp)->path, s->path) != 0) {
			pp = &(*pp)->next;
			continue;
		}
		batch[n++] = *pp;
		*pp = (*pp)->next;
	}
	take_tail = pp;
	while (*take_tail != NULL)
		take_tail = &(*take_tail)->next;
	pthread_mutex_unlock(&take_lock);

	if (begin(s) != 0) {
		for (i = 0; i < n; i++)
			take_fail(s, batch[i]);
		goto answer;
	}
	for (i = 0; i < n; i++) {
		if (sqlite3_exec(s->db, "SAVEPOINT take", NULL, NULL, NULL) != SQLITE_OK) {
			set_db_err(s, "begin a savepoint");
			goto fail_all;
		}
		if (take_in(s, batch[i]) == 0) {
			batch[i]->rc = 0;
			if (sqlite3_exec(s->db, "RELEASE take", NULL, NULL, NULL) != SQLITE_OK) {
				set_db_err(s, "release a savepoint");
				goto fail_all;
			}
			continue;
		}
		if (sqlite3_get_autocommit(s->db))
			goto fail_all; /* the transaction is gone, with the requests before */
		take_fail(s, batch[i]);
		if (sqlite3_exec(s->db, "ROLLBACK TO take; RELEASE take", NULL, NULL, NULL) !=
		    SQLITE_OK) {
			set_db_err(s, "roll back a savepoint");
			goto fail_all;
		}
	}
	if (commit(s) == 0)
		goto answer;
fail_all:
	rollback(s);
	for (j = 0; j < n; j++)
		take_fail(s, batch[j]);
answer:
	pthread_mutex_lock(&take_lock);
	for (i = 0; i < n; i++)
		batch[i]->done = 1; /* its thread may return at once: no touching it after */
	pthread_mutex_unlock(&take_lock);
}

/* The threads of a process that take events at once share one transaction (group commit): the
 * first to find no batch being written writes what is queued, its own request among it; the
 * others wait for their answers, and one of them writes the requests queued meanwhile. A lone
 * request is written at once, alone. */
static int sqlite_store_rate_take(void *h, const struct store_rate_rule *rules, int nrules,
				  const struct store_slot_request *slot, int64_t now_ms,
				  struct store_rate_verdict *v)
{
	struct sqlite_store *s = h;
	struct take_req me = { s->path, rules, nrules, slot, now_ms, v, NULL, 0, 0, "" };

	memset(v, 0, sizeof *v);
	v->refused_rule = -1;
	if (nrules > STORE_RATE_RULES_MAX) {
		set_err(s, "too many rate rules (%d)", nrules);
		return -1;
	}
	pthread_mutex_lock(&take_lock);
	*take_tail = &me;
	take_tail = &me.next;
	while (!me.done) {
		if (take_writing) {
			pthread_cond_wait(&take_answered, &take_lock);
			continue;
		}
		take_writing = 1;
		pthread_mutex_unlock(&take_lock);
		take_batch(s);
		pthread_mutex_lock(&take_lock);
		take_writing = 0;
		pthread_cond_broadcast(&take_answered);
	}
	pthread_mutex_unlock(&take_lock);
	if (me.rc != 0)
		snprintf(s->err, sizeof s->err, "%s", me.err);
	return me.rc;
}

/* Takes back one event of each taken row (equal times are interchangeable: which of them goes
 * does not matter), and its count, dropping a row left empty. */
static int sqlite_store_rate_release(void *h, const struct store_rate_verdict *v)
{
	struct sqlite_store *s = h;
	const struct store_rate_event *t;
	sqlite3_stmt *st;
	int i;

	if (v->nslots == 0)
		return 0;
	if (begin(s) != 0)
		return -1;
	for (i = 0; i < v->nslots; i++) {
		t = &v->slot_events[i];
		if ((st = rule_stmt(s, ST_RATE_TAKE_BACK, t->scope, t->subject)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 3, t->at_ms);
		if (step_done(s, st, "release rate event") != 0)
			goto fail;
		if (sqlite3_changes(s->db) == 0)
			continue; /* pruned meanwhile: nothing to give back */
		st = rule_stmt(s, ST_RATE_COUNT_DOWN, t->scope, t->subject);
		if (st == NULL || step_done(s, st, "release rate event") != 0)
			goto fail;
		/* the trigger drops the count row too when it reaches 0 */
		if ((st = rule_stmt(s, ST_RATE_DROP_EMPTY, t->scope, t->subject)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 3, t->at_ms);
		if (step_done(s, st, "release rate event") != 0)
			goto fail;
	}
	if (commit(s) != 0)
		goto fail;
	return 0;
fail:
	rollback(s);
	return -1;
}

/* Returns the number of events dropped (not of rows). */
static int sqlite_store_rate_prune(void *h, const char *scope, int64_t expired_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;
	int64_t n = 0;

	if (begin(s) != 0)
		return -1;
	if ((st = stmt(s, ST_RATE_EXPIRED)) == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, expired_ms);
	if (step_int64(s, st, &n, "count expired rate events") < 0)
		goto fail;
	if ((st = stmt(s, ST_RATE_PRUNE_SCOPE)) == NULL)
		goto fail;
	sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, expired_ms);
	if (step_done(s, st, "prune rate events") != 0)
		goto fail;
	if (commit(s) != 0)
		return -1;
	return n > INT_MAX ? INT_MAX : (int)n;
fail:
	rollback(s);
	return -1;
}

static long long sqlite_store_rate_count(void *h, const char *scope, const char *subject)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;
	int64_t n = 0;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_RATE_COUNT)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
	if (step_int64(s, st, &n, "count rate events") < 0)
		return -1;
	return n;
}

/* Runs one bound write statement in its own IMMEDIATE transaction. */
static int write_one(struct sqlite_store *s, sqlite3_stmt *st, const char *what)
{
	if (step_done(s, st, what) != 0 || commit(s) != 0) {
		rollback(s);
		return -1;
	}
	return 0;
}

/* Begins a write transaction and hands back statement id ready for binding; NULL (rolled back)
 * on failure. Finish with write_one(). */
static sqlite3_stmt *begin_write(struct sqlite_store *s, enum stmt_id id)
{
	sqlite3_stmt *st;

	if (begin(s) != 0)
		return NULL;
	if ((st = stmt(s, id)) == NULL)
		rollback(s);
	return st;
}

/* One transaction for every row: the commit (the WAL append, the lock other processes wait for)
 * is paid once. A row's insert that fails leaves the transaction open (SQLite undoes that
 * statement alone), except for the failures that end it (disk full, I/O): those take every
 * row with them, as a failed commit does. */
static int sqlite_store_pending_add_many(void *h, struct store_pending_row *rows, int n)
{
	struct sqlite_store *s = h;
	const struct pending_ref *ref;
	sqlite3_stmt *st;
	int64_t now = clock_now_ms();
	int i, failed = 0;

	for (i = 0; i < n; i++) {
		rows[i].failed = 1;
		rows[i].stored_ms = rows[i].delete_at_ms; /* one host: its clock is the store's */
	}
	if (n == 0)
		return 0;
	if (begin(s) != 0)
		return n;
	for (i = 0; i < n; i++) {
		ref = &rows[i].ref;
		if ((st = stmt(s, ST_PENDING_ADD)) == NULL)
			goto fail;
		sqlite3_bind_text(st, 1, ref->chat_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, ref->message_id);
		sqlite3_bind_int64(st, 3, rows[i].delete_at_ms);
		sqlite3_bind_int64(st, 4, now);
		sqlite3_bind_text(st, 5, ref->chat_key, -1, SQLITE_STATIC);
		if (ref->owner != NULL)
			sqlite3_bind_text(st, 6, ref->owner, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 6);
		if (step_done(s, st, "add pending deletion") != 0) {
			if (sqlite3_get_autocommit(s->db))
				goto fail; /* the transaction is gone, and the rows before with it */
			failed++;
			continue;
		}
		rows[i].failed = 0;
	}
	if (commit(s) != 0)
		goto fail_all;
	return failed;
fail:
	rollback(s);
fail_all:
	for (i = 0; i < n; i++)
		rows[i].failed = 1;
	return n;
}

static int sqlite_store_pending_add(void *h, const struct pending_ref *ref,
				    int64_t delete_at_ms, int64_t *stored_ms)
{
	struct sqlite_store *s = h;
	struct store_pending_row row = { .ref = *ref, .delete_at_ms = delete_at_ms };

	if (stored_ms != NULL)
		*stored_ms = delete_at_ms; /* one host: its clock is the store's */
	return sqlite_store_pending_add_many(s, &row, 1) == 0 ? 0 : -1;
}

static int sqlite_store_pending_due(void *h, int64_t now_ms, struct pending *out, int max)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;
	int n = 0, rc;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_PENDING_DUE)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_int(st, 2, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
		struct pending *p = &out[n++];

		p->id = sqlite3_column_int64(st, 0);
		snprintf(p->chat_id, sizeof p->chat_id, "%s",
			 (const char *)sqlite3_column_text(st, 1));
		p->message_id = sqlite3_column_int64(st, 2);
		p->delete_at_ms = sqlite3_column_int64(st, 3);
		p->next_try_ms = sqlite3_column_int64(st, 4);
		p->attempts = sqlite3_column_int(st, 5);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		set_db_err(s, "read due deletions");
		return -1;
	}
	return n;
}

static int sqlite_store_pending_next(void *h, int64_t *next_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_PENDING_NEXT)) == NULL)
		return -1;
	return step_int64(s, st, next_ms, "read next deletion");
}

static int sqlite_store_pending_last(void *h, int64_t *last_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_PENDING_LAST)) == NULL)
		return -1;
	return step_int64(s, st, last_ms, "read last deletion");
}

static long long sqlite_store_pending_count(void *h)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;
	int64_t n = 0;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_PENDING_COUNT)) == NULL)
		return -1;
	if (step_int64(s, st, &n, "count pending deletions") < 0)
		return -1;
	return n;
}

static int sqlite_store_pending_remove_many(void *h, const int64_t *ids, int n)
{
	return delete_ids(h, ST_PENDING_REMOVE, ids, n, "remove pending deletion");
}

static int sqlite_store_pending_remove(void *h, int64_t id)
{
	return sqlite_store_pending_remove_many(h, &id, 1);
}

static int sqlite_store_pause_extend(void *h, const char *kind, int64_t until_ms,
				     const char *program)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if ((st = begin_write(s, ST_PAUSE_EXTEND)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, until_ms);
	sqlite3_bind_text(st, 3, program, -1, SQLITE_STATIC);
	return write_one(s, st, "record Telegram's pause");
}

static int sqlite_store_pause_get(void *h, const char *kind, int64_t *until_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_PAUSE_GET)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	return step_int64(s, st, until_ms, "read Telegram's pause");
}

static int sqlite_store_metrics_add(void *h, const struct store_metric *d, int n, int *added)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;
	int i;

	(void)added; /* one transaction: a failure adds none (store.c set it to 0) */
	if (begin(s) != 0)
		return -1;
	for (i = 0; i < n; i++) {
		if ((st = stmt(s, ST_METRIC_ADD)) == NULL)
			goto fail;
		sqlite3_bind_text(st, 1, d[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, d[i].labels, -1, SQLITE_STATIC);
		sqlite3_bind_double(st, 3, d[i].value);
		if (step_done(s, st, "add to metrics") != 0)
			goto fail;
	}
	if (commit(s) != 0)
		goto fail;
	return 0;
fail:
	rollback(s);
	return -1;
}

static int sqlite_store_metrics_read(void *h,
				     void (*fn)(void *ctx, const struct store_metric *m), void *ctx)
{
	struct sqlite_store *s = h;
	struct store_metric m;
	sqlite3_stmt *st;
	int rc;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_METRIC_READ)) == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		m.name = (const char *)sqlite3_column_text(st, 0);
		m.labels = (const char *)sqlite3_column_text(st, 1);
		m.value = sqlite3_column_double(st, 2);
		fn(ctx, &m);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		set_db_err(s, "read metrics");
		return -1;
	}
	return 0;
}

static int sqlite_store_pending_retry(void *h, int64_t id, int64_t next_try_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if ((st = begin_write(s, ST_PENDING_RETRY)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, next_try_ms);
	return write_one(s, st, "record retry");
}

static int sqlite_store_heartbeat_set(void *h, const char *program, int64_t now_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if ((st = begin_write(s, ST_HEARTBEAT_SET)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, program, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, (int)getpid());
	sqlite3_bind_int64(st, 3, now_ms);
	return write_one(s, st, "write heartbeat");
}

static int sqlite_store_heartbeat_get(void *h, const char *program, int64_t *beat_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st;

	if (sqlite_store_ensure_current(s) != 0 || (st = stmt(s, ST_HEARTBEAT_GET)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, program, -1, SQLITE_STATIC);
	return step_int64(s, st, beat_ms, "read heartbeat");
}

/* --- Revocation (POST /revoke-otp) -------------------------------------------------------------
 * Self-contained: its statements are prepared per call (a revoke is rare), so the table of
 * cached statements above stays as it is. */

/* an equality on pending_deletions_by_chat_key: the write lock is held for a look-up, not a
 * scan (the test of the query plan keeps it so); another owner's row is not found */
const char sqlite_store_claim_find_sql[] =
	"SELECT id, chat_id, message_id, delete_at_ms, next_try_ms, attempts "
	"FROM pending_deletions WHERE chat_key = ?1 AND message_id = ?2 AND owner IS ?3 "
	"ORDER BY id LIMIT 1";
/* next_try_ms >= delete_at_ms holds for every row (otp-deleter's retries keep it): moving
 * delete_at to now and the next try to the lease's end keeps it */
static const char claim_take_sql[] =
	"UPDATE pending_deletions SET delete_at_ms = ?2, next_try_ms = ?3 WHERE id = ?1";
static const char release_sql[] =
	"UPDATE pending_deletions SET next_try_ms = max(?2, delete_at_ms) "
	"WHERE id = ?1 AND next_try_ms > ?2";

static sqlite3_stmt *prepare_once(struct sqlite_store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		set_db_err(s, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static int sqlite_store_pending_claim(void *h, const struct pending_ref *ref,
				      const struct store_claim_request *req, struct pending *out)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st = NULL;
	int64_t now;
	int rc = -1, step;

	if (begin(s) != 0)
		return -1;
	/* now as of the write lock, as a Redis script reads TIME: the wait for the lock may be
	 * long, and a wall-clock step during it must move no instant of the claim */
	now = clock_now_ms();
	if ((st = prepare_once(s, sqlite_store_claim_find_sql)) == NULL)
		goto out;
	sqlite3_bind_text(st, 1, ref->chat_key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, ref->message_id);
	if (ref->owner != NULL)
		sqlite3_bind_text(st, 3, ref->owner, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = STORE_CLAIM_NONE;
		goto out;
	}
	if (step != SQLITE_ROW) {
		set_db_err(s, "find pending deletion");
		goto out;
	}
	memset(out, 0, sizeof *out);
	out->id = sqlite3_column_int64(st, 0);
	snprintf(out->chat_id, sizeof out->chat_id, "%s", (const char *)sqlite3_column_text(st, 1));
	out->message_id = sqlite3_column_int64(st, 2);
	out->delete_at_ms = sqlite3_column_int64(st, 3);
	out->next_try_ms = sqlite3_column_int64(st, 4);
	out->attempts = sqlite3_column_int(st, 5);
	sqlite3_finalize(st);
	st = NULL;
	if (out->delete_at_ms <= now + req->margin_ms) {
		rc = STORE_CLAIM_DUE;
		goto out;
	}
	if ((st = prepare_once(s, claim_take_sql)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, out->id);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, now + req->lease_ms);
	if (sqlite3_step(st) != SQLITE_DONE) {
		set_db_err(s, "claim pending deletion");
		goto out;
	}
	out->delete_at_ms = now;
	out->next_try_ms = now + req->lease_ms;
	rc = STORE_CLAIM_TAKEN;
out:
	sqlite3_finalize(st);
	if (rc < 0 || commit(s) != 0) {
		rollback(s);
		return -1;
	}
	return rc;
}

static int sqlite_store_pending_release(void *h, int64_t id, int64_t now_ms)
{
	struct sqlite_store *s = h;
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (begin(s) != 0)
		return -1;
	if ((st = prepare_once(s, release_sql)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ms);
	if (sqlite3_step(st) != SQLITE_DONE) {
		set_db_err(s, "release pending deletion");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	if (rc != 0 || commit(s) != 0) {
		rollback(s);
		return -1;
	}
	return 0;
}

const struct store_ops sqlite_store_ops = {
	.shared_by_hosts = 0,
	.open = sqlite_store_open,
	.close = sqlite_store_close,
	.strerror = sqlite_store_strerror,
	.check_file = sqlite_store_check_file,
	.is_on_tmpfs = sqlite_store_is_on_tmpfs,
	.rate_take = sqlite_store_rate_take,
	.rate_release = sqlite_store_rate_release,
	.rate_prune = sqlite_store_rate_prune,
	.rate_count = sqlite_store_rate_count,
	.pending_add = sqlite_store_pending_add,
	.pending_add_many = sqlite_store_pending_add_many,
	.pending_due = sqlite_store_pending_due,
	.pending_next = sqlite_store_pending_next,
	.pending_last = sqlite_store_pending_last,
	.pending_count = sqlite_store_pending_count,
	.pending_remove = sqlite_store_pending_remove,
	.pending_retry = sqlite_store_pending_retry,
	.pending_remove_many = sqlite_store_pending_remove_many,
	.pending_claim = sqlite_store_pending_claim,
	.pending_release = sqlite_store_pending_release,
	.pause_extend = sqlite_store_pause_extend,
	.pause_get = sqlite_store_pause_get,
	.metrics_add = sqlite_store_metrics_add,
	.metrics_read = sqlite_store_metrics_read,
	.heartbeat_set = sqlite_store_heartbeat_set,
	.heartbeat_get = sqlite_store_heartbeat_get,
};
