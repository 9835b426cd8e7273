/* store.h — the shared state of otp-fcgi and otp-deleter: pending deletions, rate-limit events,
 * the send queue, Telegram's pauses, the deleter's heartbeat. Storage only: what a limit, a
 * window or a pause means is lib/policy.h's. Two backends behind this one interface, chosen by
 * the store's URL (OTP_STORE, store_url.h), each a method table (store_backend.h); nothing
 * above it knows which one runs, only what it can do (store_is_shared()):
 *
 * - SQLite (store_sqlite*.c, the default): one file on one host. Several processes may use it at
 *   once: every write is one short transaction begun with BEGIN IMMEDIATE. The threads of one
 *   process queue for writing on a mutex (so only one of them ever waits for another process's
 *   lock), and another process's lock is waited for with a backoff (up to
 *   STORE_BUSY_TIMEOUT_MS). Reads take no transaction. If the file is removed or replaced while
 *   open, the next call notices and reopens the path.
 * - Redis (store_redis.c): one server shared by several hosts. Every multi-key update is one Lua
 *   script (atomic). A lost connection is retried on use with a backoff (calls fail meanwhile).
 *   Differences a caller must know are marked "Redis:" below.
 *
 * Clocks: instants cross this interface on the caller's clock (clock_now_ms(); tests pass their
 * own), and durations are measured on it. SQLite keeps them as they are: one host, one clock.
 * Redis keeps every instant on its own clock (TIME, read inside the script that writes or
 * compares it): an instant a caller hands over is its now plus a duration and is kept as Redis's
 * now plus that duration, instants read back are moved onto the caller's clock, and the
 * heartbeat is Redis's now whatever the caller says. So hosts whose clocks disagree share one
 * clock; the one instant answered on the store's own clock is store_pending_add()'s *stored_ms,
 * what a client is told. With "clock=host" in the URL (tests) Redis takes the caller's instants
 * as they are.
 *
 * A handle is used by one thread at a time (it may pass from thread to thread). The OTP and the message text are never given to the store.
 *
 * Errors: functions returning int answer 0 (or a count) on success and -1 on failure, with the
 * reason in store_strerror(); the caller reports it once, with its own context.
 *
 * SQLite's files: the directory holding the database must belong to the effective user and be
 * closed to group and others' writes, or store_open() refuses it. The database, its -wal and
 * -shm and PATH.lock (held while a handle opens the file) are 0600. If the file is removed or
 * replaced while open, every call notices (one stat) and reopens the path; the stale -wal/-shm of
 * the old file are removed first. The first handle of a process to meet a new file logs it (once
 * per process) and counts it (store_reopens_take). Rows only the old file held are lost. */
#ifndef OTP_STORE_H
#define OTP_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_SCHEMA_VERSION 4
#define STORE_CHAT_ID_MAX 48

struct store;

/* A message that is to be deleted. */
struct pending {
	int64_t id;                       /* the store's own key */
	char chat_id[STORE_CHAT_ID_MAX];
	long long message_id;
	int64_t delete_at_ms;             /* never delete before this instant */
	int64_t next_try_ms;              /* delete_at_ms, or the time of the next retry */
	int attempts;                     /* failed attempts so far */
};

/* One log of events per (scope, subject) that holds at most `limit` of them; events at or before
 * expired_ms no longer count (the caller turns its window into that instant). */
struct store_rate_rule {
	const char *scope;    /* "chat", "ip", … */
	const char *subject;  /* the chat id, the client address, … (< STORE_SUBJECT_MAX bytes) */
	int limit;
	int64_t expired_ms;
};

#define STORE_RATE_RULES_MAX 4

/* A reservation in the shared send queue: the instant max(now_us, the queue's next free instant,
 * the end of the pause of kind pause_kind), taken only if it is at most latest_us; the queue's
 * next free instant then moves to that instant + spacing_us. Microseconds since the epoch. */
struct store_slot_request {
	int64_t now_us;
	int64_t spacing_us;
	int64_t latest_us;
	const char *pause_kind; /* the pause that holds this queue ("send"), or NULL */
	int64_t pause_cap_us;   /* a pause is honoured up to this instant at most (a hand-edited
				 * row cannot hold the queue longer than any 429 could) */
	int64_t reset_after_us; /* a next free instant later than this cannot have been reserved
				 * on the caller's clock (it stepped back since): the queue starts
				 * again from now_us */
	/* the program (NULL: none) whose heartbeat must lie within [beat_after_ms,
	 * beat_before_ms] (the caller's clock) for anything to be taken: read in the same write */
	const char *beat_program;
	int64_t beat_after_ms, beat_before_ms;
};

#define STORE_SCOPE_MAX 16
#define STORE_SUBJECT_MAX 128

/* Where store_rate_take() recorded one event: with its id, all that any handle of the store
 * needs to give it back (Redis keeps each subject's events in a list of its own). */
struct store_rate_event {
	int64_t at_ms;
	char scope[STORE_SCOPE_MAX];
	char subject[STORE_SUBJECT_MAX];
};

/* What store_rate_take() did. */
struct store_rate_verdict {
	int beat_refused;        /* 1: the slot's heartbeat is missing or out of bounds; nothing
				  * taken, nothing else checked */
	int beat_found;          /* when beat_refused: the heartbeat exists, at beat_ms */
	int64_t beat_ms;
	int refused_rule;        /* index of the first rule that is full, or -1 */
	int64_t freeing_at_ms;   /* when refused: the event whose expiry frees a place, its time */
	int slot_refused;        /* 1: the slot (slot_us) is later than latest_us; nothing taken */
	int slot_paused;         /* 1: the pause of pause_kind set slot_us (it ends later than the
				  * queue's next free instant) */
	int64_t slot_us;         /* the instant reserved (or that would have been) */
	int64_t slot_ids[STORE_RATE_RULES_MAX]; /* the events taken (ids for logs and tests) */
	/* where each of them is: what store_rate_release() gives back, on any handle */
	struct store_rate_event slot_events[STORE_RATE_RULES_MAX];
	int nslots;
};

/* How to open the store. Only url is required. */
struct store_config {
	const char *url;                 /* OTP_STORE (store_url.h), or a plain SQLite path */
	const char *redis_password_file; /* Redis: AUTH with this file's first line; NULL: none */
	const char *redis_prefix;        /* Redis: prefix of every key; NULL: "otp:" */
	const char *host_name;           /* Redis: whose metrics these are; NULL: gethostname() */
	int64_t lease_ms;                /* Redis: how long a deleter's claim on a due row lasts
					  * (longer than any deletion call); 0: 30 s */
	const char *redis_sentinel_password_file; /* Sentinel: AUTH to the sentinels; NULL: none */
	int redis_min_replicas;          /* Redis: replicas that must hold a pending row before
					  * store_pending_add() succeeds (WAIT); -1: 1 when the
					  * primary has replicas, else 0. 0 in a zeroed config: none */
	int redis_wait_ms;               /* Redis: how long to wait for them; 0: the default */
};

/* Bounds of the two settings above (OTP_REDIS_MIN_REPLICAS, OTP_REDIS_WAIT_MS): a wait stays
 * under the store's deadline for one reply. */
#define STORE_REDIS_REPLICAS_MAX 16
#define STORE_REDIS_WAIT_MS_MAX 1500

/* Opens the store c->url names: for SQLite (creating if need be) the file and its schema; for
 * Redis a connection (an unreachable server is not an error here: calls fail until it is
 * back). Returns NULL with a reason in err when it cannot (bad URL, unreadable password file,
 * database file that cannot be created). */
struct store *store_open_config(const struct store_config *c, char *err, size_t errlen);
/* store_open_config() with only the URL (or SQLite path) set. */
struct store *store_open(const char *url, char *err, size_t errlen);
void store_close(struct store *s);

/* Whether several hosts share the store over the network (Redis): it fails by being out of
 * reach, keeps no file and no lock, and hands rows out with leases. */
int store_is_shared(const struct store *s);
/* The same for the store a parsed URL names, before it is opened. */
struct store_url;
int store_url_is_shared(const struct store_url *u);

/* Checks now that the handle's file is still the one at the path, reopening it if not: for loops
 * that may go a while without another call. Returns 1 if it reopened, 0 if nothing changed, -1
 * when reopening failed. Redis: 0 (there is no file). */
int store_check_file(struct store *s);

/* How many times this process found its database removed or replaced since the last call
 * (SQLite; always 0 with Redis). */
long store_reopens_take(void);

/* How many times this process found that Redis Sentinel named another primary since the last
 * call (redis+sentinel://; otherwise 0). */
long store_primary_changes_take(void);

/* The reason for the last failure on this handle. */
const char *store_strerror(const struct store *s);

/* 1 if the file lives on tmpfs (RAM), 0 if not, -1 if that cannot be told (and for Redis). */
int store_is_on_tmpfs(const struct store *s);

/* 0 when the directory holding the SQLite file db_path belongs to this process's user and no
 * one else may write it (what opening the database checks); -1 with the reason in err. For
 * files to be made beside the database (otp-deleter's lock) before it is opened. */
int store_check_db_dir(const char *db_path, char *err, size_t errlen);

/* In one write: unless the heartbeat slot->beat_program names is missing or out of its bounds
 * (then beat_refused), unless a rule is full (then refused_rule is the first full one in array order,
 * with freeing_at_ms) and unless slot (may be NULL) cannot be reserved in time (then
 * slot_refused), records one event at now_ms in every rule and reserves the slot. Either
 * everything is taken or nothing. Only events after expired_ms count; expired ones are dropped
 * at the latest when they would decide (SQLite: when the subject's count, expired ones included,
 * reaches its limit; Redis: every call), the others by store_rate_prune(). Costs O(1) per call
 * plus O(1) per expired event, whatever the limits (a per-subject count is kept with the events).
 * SQLite: the calls a process's threads make at once share one transaction, each in a savepoint
 * of its own (group commit); a call returns once its transaction is committed, and fails alone
 * unless the transaction does. Returns 0 (whatever the verdict) or -1. */
int store_rate_take(struct store *s, const struct store_rate_rule *rules, int nrules,
		    const struct store_slot_request *slot, int64_t now_ms,
		    struct store_rate_verdict *verdict);

/* Gives back the events a verdict took (the request did not go to Telegram after all), on any
 * handle of the same store. */
int store_rate_release(struct store *s, const struct store_rate_verdict *verdict);

/* Drops events of scope at or before expired_ms. Returns the number dropped, or -1. */
int store_rate_prune(struct store *s, const char *scope, int64_t expired_ms);

/* The number of events (scope, subject) holds, expired or not (tests, inspection), or -1. */
long long store_rate_count(struct store *s, const char *scope, const char *subject);

/* A sent message as the store knows it: what a pending row is written with and found again by. */
struct pending_ref {
	const char *chat_id;  /* as the client named it (what deleteMessage is called with) */
	/* the chat as one key whatever the case of an @username (policy_chat_subject()): computed by
	 * the caller once, kept with the row and indexed with message_id; revocation looks rows
	 * up by it with an equality, never by folding case in the store */
	const char *chat_key;
	long long message_id;
	const char *owner;    /* the API key that sent it (its owner name), NULL without keys */
};

/* Records that ref's message is to be deleted at delete_at_ms (the caller's clock), and puts in
 * *stored_ms (may be NULL) that instant as the store keeps it: on the store's clock (see
 * "Clocks"), what a client is to be told. */
int store_pending_add(struct store *s, const struct pending_ref *ref, int64_t delete_at_ms,
		      int64_t *stored_ms);

/* One row of store_pending_add_many(): what store_pending_add() takes, and what became of it. */
struct store_pending_row {
	struct pending_ref ref;
	int64_t delete_at_ms;
	int64_t stored_ms; /* out: as store_pending_add()'s *stored_ms */
	int failed;        /* out: 1 when this row was not recorded */
};

/* Records rows[0..n) as store_pending_add() would each, and says of each whether it was.
 * SQLite: in one transaction, so many sends pay for one commit; a row whose insert fails on its
 * own is marked failed and the others go on; when the transaction fails (begin, commit, or a
 * failure that ends it) every row is marked failed. Redis: one script call per row, then one wait
 * for the replicas of them all (redis_min_replicas); a row written on a connection lost before
 * that wait is marked failed. Returns the
 * number of rows that failed, with the reason of the last failure in store_strerror(). */
int store_pending_add_many(struct store *s, struct store_pending_row *rows, int n);

/* Fills out with up to max rows whose next try is due at now_ms, earliest first.
 * Returns the number of rows, or -1.
 * Redis: several otp-deleters may share the store, so the rows returned are also claimed: their
 * next try moves to now_ms + the lease (store_config), so no other deleter gets them until the
 * lease runs out (a deleter that died loses nothing); the caller removes or retries them. */
int store_pending_due(struct store *s, int64_t now_ms, struct pending *out, int max);

/* The earliest next try of any row into *next_ms; returns 1 if there is one, 0 if the table is
 * empty, -1 on error. */
int store_pending_next(struct store *s, int64_t *next_ms);

/* The latest next try of any row into *last_ms (when the last of the rows pending now will be
 * handled, as things stand); returns 1 if there is one, 0 if the table is empty, -1 on error. */
int store_pending_last(struct store *s, int64_t *last_ms);

/* Number of rows in the table, or -1. */
long long store_pending_count(struct store *s);

/* Removes a row: the message is gone (or can never be deleted). */
int store_pending_remove(struct store *s, int64_t id);

/* Records a failed attempt: attempts + 1, next try at next_try_ms. */
int store_pending_retry(struct store *s, int64_t id, int64_t next_try_ms);

/* Removes several rows in one transaction. */
int store_pending_remove_many(struct store *s, const int64_t *ids, int n);

/* A pause of one kind of Bot API call ("send", "delete"): no such call before until_ms, in
 * any process. store_pause_extend() moves it later, never earlier. */
int store_pause_extend(struct store *s, const char *kind, int64_t until_ms, const char *program);
/* Returns 1 with *until_ms set when a pause of kind is recorded, 0 if none, -1 on error. */
int store_pause_get(struct store *s, const char *kind, int64_t *until_ms);

/* One series' delta (store_metrics_add) or total (store_metrics_read). */
struct store_metric {
	const char *name;
	const char *labels;
	double value;
};

/* Adds each delta to its series' stored total. Returns 0, or -1 with *added set to how many
 * deltas, from the first, were added all the same (SQLite: one transaction, so none; Redis:
 * the chunks written before the failure): the caller keeps only the rest for a retry. */
int store_metrics_add(struct store *s, const struct store_metric *deltas, int n, int *added);

/* Calls fn for every stored series; the strings live until fn returns. Returns 0 or -1. */
int store_metrics_read(struct store *s, void (*fn)(void *ctx, const struct store_metric *m),
		       void *ctx);

/* The heartbeat of a program (e.g. "otp-deleter"). Redis: the beat is the store's now. */
int store_heartbeat_set(struct store *s, const char *program, int64_t now_ms);
/* Returns 1 with *beat_ms set, 0 if that program never beat, -1 on error. */
int store_heartbeat_get(struct store *s, const char *program, int64_t *beat_ms);

/* --- Revocation (POST /revoke-otp): taking a pending row out of otp-deleter's reach ---------- */

/* What store_pending_claim() found. */
enum store_claim {
	STORE_CLAIM_NONE,  /* no pending row for that message in that chat */
	STORE_CLAIM_DUE,   /* the row is due (or about to be): otp-deleter has it or takes it at once;
			    * left as it was */
	STORE_CLAIM_TAKEN, /* the row is the caller's until its lease ends; *out filled */
};

/* What store_pending_claim() is handed (policy_claim_request() fills it). */
struct store_claim_request {
	int64_t now_ms;    /* the caller's clock, read just before the call: the row's new
			    * delete_at is the store's now (Redis: TIME; SQLite: this host's clock
			    * once the write lock is held), and a shared store uses this to move
			    * instants between the two clocks */
	int64_t margin_ms; /* a row due within this of now is left as it is (STORE_CLAIM_DUE) */
	int64_t lease_ms;  /* how long a taken row is the caller's; 0 hands it to otp-deleter */
};

/* Finds the pending row of ref->message_id in ref->chat_key (ref->chat_id is not used) whose
 * owner is ref->owner (NULL finds only rows written without one: a row is the business of the
 * key that sent it alone, and another key's finds nothing, as for an unknown message) and,
 * unless it is due within req->margin_ms, takes it in one transaction: delete_at becomes now
 * (the client wants it gone) and the next try now + req->lease_ms, so otp-deleter leaves it
 * alone until then and takes it over afterwards if the caller never comes back (a crash loses
 * nothing). Redis: "now" is the store's (see "Clocks"). Returns the claim, with *out filled for
 * TAKEN (and for DUE), or -1. */
int store_pending_claim(struct store *s, const struct pending_ref *ref,
			const struct store_claim_request *req, struct pending *out);

/* Gives a claimed row back to otp-deleter, due at now_ms (never earlier than its delete_at).
 * A row that is gone already is not an error. */
int store_pending_release(struct store *s, int64_t id, int64_t now_ms);

#endif
