/* store_backend.h — the seam under store.h: what a backend is to lib/store.c. Each backend lives
 * in its own files, the only ones that include its client library (store_sqlite.c and
 * store_sqlite_file.c: sqlite3.h; store_redis.c: hiredis.h), and exports one method table;
 * store.c opens the backend the URL names and hands every call to its table. Nothing outside lib/store*.c includes this header
 * (but the tests). */
#ifndef OTP_STORE_BACKEND_H
#define OTP_STORE_BACKEND_H

#include "store.h"
#include "store_url.h"

/* A backend: what it can do (flags), then its methods. Every method has the contract of its
 * store_* namesake in store.h, with the handle open() returned in place of the store; every
 * entry is set (store.c calls them unchecked), the methods last (the test of the tables walks
 * them). */
struct store_ops {
	int shared_by_hosts; /* store_is_shared() */

	/* The handle on the store u names (c: the rest of the settings), or NULL with a reason
	 * in err. */
	void *(*open)(const struct store_url *u, const struct store_config *c, char *err,
		      size_t errlen);
	void (*close)(void *h);
	const char *(*strerror)(const void *h);
	int (*check_file)(void *h);
	int (*is_on_tmpfs)(const void *h);
	int (*rate_take)(void *h, const struct store_rate_rule *rules, int nrules,
			 const struct store_slot_request *slot, int64_t now_ms,
			 struct store_rate_verdict *verdict);
	int (*rate_release)(void *h, const struct store_rate_verdict *verdict);
	int (*rate_prune)(void *h, const char *scope, int64_t expired_ms);
	long long (*rate_count)(void *h, const char *scope, const char *subject);
	int (*pending_add)(void *h, const struct pending_ref *ref, int64_t delete_at_ms,
			   int64_t *stored_ms);
	int (*pending_add_many)(void *h, struct store_pending_row *rows, int n);
	int (*pending_due)(void *h, int64_t now_ms, struct pending *out, int max);
	int (*pending_next)(void *h, int64_t *next_ms);
	int (*pending_last)(void *h, int64_t *last_ms);
	long long (*pending_count)(void *h);
	int (*pending_remove)(void *h, int64_t id);
	int (*pending_retry)(void *h, int64_t id, int64_t next_try_ms);
	int (*pending_remove_many)(void *h, const int64_t *ids, int n);
	int (*pending_claim)(void *h, const struct pending_ref *ref,
			     const struct store_claim_request *req, struct pending *out);
	int (*pending_release)(void *h, int64_t id, int64_t now_ms);
	int (*pause_extend)(void *h, const char *kind, int64_t until_ms, const char *program);
	int (*pause_get)(void *h, const char *kind, int64_t *until_ms);
	int (*metrics_add)(void *h, const struct store_metric *deltas, int n, int *added);
	int (*metrics_read)(void *h, void (*fn)(void *ctx, const struct store_metric *m),
			    void *ctx);
	int (*heartbeat_set)(void *h, const char *program, int64_t now_ms);
	int (*heartbeat_get)(void *h, const char *program, int64_t *beat_ms);
};

extern const struct store_ops sqlite_store_ops; /* store_sqlite*.c: one file on one host */
extern const struct store_ops redis_store_ops;  /* store_redis.c: one server, several hosts */

/* SQLite: the claim's look-up (?1 chat_key, ?2 message_id, ?3 owner), for the test of its query
 * plan. */
extern const char sqlite_store_claim_find_sql[];

#endif
