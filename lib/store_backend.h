/* store_backend.h — what lib/store.c dispatches to: the two backends of store.h, each in its
 * own file and the only one that includes its client library (store_sqlite.c: sqlite3.h;
 * store_redis.c: hiredis.h). Every function has the contract of its store_* namesake in store.h;
 * only opening differs. Nothing outside lib/store*.c includes this header. */
#ifndef OTP_STORE_BACKEND_H
#define OTP_STORE_BACKEND_H

#include "store.h"
#include "store_url.h"

struct sqlite_store;
struct redis_store;

/* --- SQLite (store_sqlite.c) ------------------------------------------------------------- */

struct sqlite_store *sqlite_store_open(const char *path, char *err, size_t errlen);
void sqlite_store_close(struct sqlite_store *s);
const char *sqlite_store_strerror(const struct sqlite_store *s);
int sqlite_store_is_on_tmpfs(const struct sqlite_store *s);
int sqlite_store_check_dir(const char *db_path, char *err, size_t errlen);
int sqlite_store_check_file(struct sqlite_store *s);
long sqlite_store_reopens_take(void);
int sqlite_store_rate_take(struct sqlite_store *s, const struct store_rate_rule *rules, int nrules,
			   const struct store_slot_request *slot, int64_t now_ms,
			   struct store_rate_verdict *verdict);
int sqlite_store_rate_release(struct sqlite_store *s, const struct store_rate_verdict *verdict);
int sqlite_store_rate_prune(struct sqlite_store *s, const char *scope, int64_t expired_ms);
long long sqlite_store_rate_count(struct sqlite_store *s, const char *scope, const char *subject);
int sqlite_store_pending_add(struct sqlite_store *s, const struct pending_ref *ref,
			     int64_t delete_at_ms, int64_t *stored_ms);
int sqlite_store_pending_add_many(struct sqlite_store *s, struct store_pending_row *rows, int n);
int sqlite_store_pending_due(struct sqlite_store *s, int64_t now_ms, struct pending *out, int max);
int sqlite_store_pending_next(struct sqlite_store *s, int64_t *next_ms);
int sqlite_store_pending_last(struct sqlite_store *s, int64_t *last_ms);
long long sqlite_store_pending_count(struct sqlite_store *s);
int sqlite_store_pending_remove(struct sqlite_store *s, int64_t id);
int sqlite_store_pending_retry(struct sqlite_store *s, int64_t id, int64_t next_try_ms);
int sqlite_store_pending_remove_many(struct sqlite_store *s, const int64_t *ids, int n);
int sqlite_store_pause_extend(struct sqlite_store *s, const char *kind, int64_t until_ms,
			      const char *program);
int sqlite_store_pause_get(struct sqlite_store *s, const char *kind, int64_t *until_ms);
int sqlite_store_metrics_add(struct sqlite_store *s, const struct store_metric *deltas, int n);
int sqlite_store_metrics_read(struct sqlite_store *s, void (*fn)(void *ctx,
			      const struct store_metric *m), void *ctx);
int sqlite_store_heartbeat_set(struct sqlite_store *s, const char *program, int64_t now_ms);
int sqlite_store_heartbeat_get(struct sqlite_store *s, const char *program, int64_t *beat_ms);
int sqlite_store_pending_claim(struct sqlite_store *s, const struct pending_ref *ref,
			     int64_t lease_ms, struct pending *out);
/* The claim's look-up (?1 chat_key, ?2 message_id, ?3 owner): exposed for the test of its query
 * plan. */
extern const char sqlite_store_claim_find_sql[];
int sqlite_store_pending_release(struct sqlite_store *s, int64_t id, int64_t now_ms);
/* --- Redis (store_redis.c) --------------------------------------------------------------- */

/* Connects to the server u names (the password from c->redis_password_file, the prefix from
 * u->prefix, else c->redis_prefix, else "otp:") and loads the scripts. NULL with a reason in err
 * when the settings are wrong; an unreachable server is not a failure here: the handle
 * reconnects (with backoff) on use, and calls fail until it is back. */
struct redis_store *redis_store_open(const struct store_url *u, const struct store_config *c,
				     char *err, size_t errlen);
void redis_store_close(struct redis_store *s);
const char *redis_store_strerror(const struct redis_store *s);
int redis_store_rate_take(struct redis_store *s, const struct store_rate_rule *rules, int nrules,
			  const struct store_slot_request *slot, int64_t now_ms,
			  struct store_rate_verdict *verdict);
int redis_store_rate_release(struct redis_store *s, const struct store_rate_verdict *verdict);
int redis_store_rate_prune(struct redis_store *s, const char *scope, int64_t expired_ms);
long long redis_store_rate_count(struct redis_store *s, const char *scope, const char *subject);
int redis_store_pending_add(struct redis_store *s, const struct pending_ref *ref,
			    int64_t delete_at_ms, int64_t *stored_ms);
int redis_store_pending_add_many(struct redis_store *s, struct store_pending_row *rows, int n);
int redis_store_pending_due(struct redis_store *s, int64_t now_ms, struct pending *out, int max);
int redis_store_pending_next(struct redis_store *s, int64_t *next_ms);
int redis_store_pending_last(struct redis_store *s, int64_t *last_ms);
long long redis_store_pending_count(struct redis_store *s);
int redis_store_pending_remove(struct redis_store *s, int64_t id);
int redis_store_pending_retry(struct redis_store *s, int64_t id, int64_t next_try_ms);
int redis_store_pending_remove_many(struct redis_store *s, const int64_t *ids, int n);
int redis_store_pause_extend(struct redis_store *s, const char *kind, int64_t until_ms,
			     const char *program);
int redis_store_pause_get(struct redis_store *s, const char *kind, int64_t *until_ms);
int redis_store_metrics_add(struct redis_store *s, const struct store_metric *deltas, int n,
			    int *added);
int redis_store_metrics_read(struct redis_store *s, void (*fn)(void *ctx,
			     const struct store_metric *m), void *ctx);
int redis_store_heartbeat_set(struct redis_store *s, const char *program, int64_t now_ms);
int redis_store_heartbeat_get(struct redis_store *s, const char *program, int64_t *beat_ms);
int redis_store_pending_claim(struct redis_store *s, const struct pending_ref *ref,
			    int64_t lease_ms, struct pending *out);
int redis_store_pending_release(struct redis_store *s, int64_t id, int64_t now_ms);
#endif
