/* cfg.h — the settings of otp-fcgi and otp-deleter, read from the environment.
 *
 * Names and defaults are the original service's (TELEGRAM_BOT_TOKEN, DEFAULT_EXPIRE_SECONDS, …)
 * plus ours; docs/settings.md lists them all. Values come from the process environment, and from the
 * KEY=VALUE file named by OTP_ENV_FILE for keys the environment does not set. */
#ifndef OTP_CFG_H
#define OTP_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* The largest DELETER_CONCURRENCY, and the most calls otp-deleter runs at once. */
#define DELETER_CONCURRENCY_MAX 1024

/* A numeric setting: its name, default (and default with TELEGRAM_PAID_BROADCAST=1), bounds,
 * and the int of struct cfg it sets. */
struct cfg_int_setting {
	const char *name;
	int def, paid_def, min, max;
	size_t offset;
};

struct cfg {
	char *bot_token;          /* secret: never logged; wiped by cfg_free() */
	char *api_key;            /* API_KEY: one unnamed key; secret; or NULL */
	char *api_keys;           /* OTP_API_KEYS: "key" or "name:key", comma-separated; secret; or NULL */
	char *api_keys_file;      /* OTP_API_KEYS_FILE: "name key|sha256:<hex> [limit=N]" lines; or NULL */
	int key_limit_per_minute; /* OTP_KEY_LIMIT_PER_MINUTE: OTPs per key per minute; 0: off */
	char *api_base;           /* TELEGRAM_API_BASE, without a trailing slash */
	char *ca_file;            /* TELEGRAM_CA_FILE: the CAs the Bot API's certificate must verify
				   * against, or NULL for the system's store */
	int sandbox;              /* OTP_SANDBOX=1: talking to the bundled emulator */
	int telegram_timeout_s;   /* TELEGRAM_TIMEOUT_SECONDS */
	int telegram_timeout_ms;  /* the same, in ms */
	int body_timeout_s;       /* OTP_BODY_TIMEOUT_SECONDS: the longest a request body may take to
				   * arrive once the key is checked (408 after) */
	int body_timeout_ms;      /* the same, in ms */
	int max_sends_per_second; /* TELEGRAM_MAX_SENDS_PER_SECOND: the bot's send budget, all processes */
	int send_wait_ms;         /* TELEGRAM_SEND_WAIT_MS: how long a send waits for budget or a pause */
	int max_pause_s;          /* TELEGRAM_MAX_PAUSE_SECONDS: the longest pause a 429 can impose */
	int paid_broadcast;       /* TELEGRAM_PAID_BROADCAST=1: allow_paid_broadcast, 1000 sends/s */

	int default_expire_s, min_expire_s, max_expire_s;
	int rate_limit_per_user;  /* per rate_limit_window_s, per chat_id */
	int rate_limit_window_s;  /* RATE_LIMIT_WINDOW_SECONDS, else RATE_LIMIT_WINDOW_HOURS × 3600 */
	int rate_limit_window_hours; /* as configured, for the original's 429 wording */
	int rate_limit_per_ip;    /* per minute per client address; 0 turns it off */

	int port;
	char *host;
	enum log_level log_level;
	char *message_template;   /* HTML with {otp} and {sec} */
	char *db_path;            /* the SQLite file: OTP_DB_PATH or the tmpfs default; NULL for Redis */
	int db_in_user_shm_dir;   /* db_path is the default of a user without /run: a directory of
				   * its own named after its uid under /dev/shm */
	char *store_url;          /* OTP_STORE, or db_path when it is unset */
	int store_is_shared;      /* OTP_STORE names a store several hosts share (store_is_shared) */
	char *redis_password_file; /* OTP_REDIS_PASSWORD_FILE, or NULL */
	char *redis_prefix;       /* OTP_REDIS_PREFIX, or NULL ("otp:") */
	char *redis_sentinel_password_file; /* OTP_REDIS_SENTINEL_PASSWORD_FILE, or NULL */
	int redis_min_replicas;   /* OTP_REDIS_MIN_REPLICAS, or -1: 1 when the primary has replicas */
	int redis_wait_ms;        /* OTP_REDIS_WAIT_MS: how long a pending row waits for them */
	char *host_name;          /* OTP_HOST_NAME: whose metrics (Redis); NULL: the host name */

	int fcgi_threads;         /* OTP_FCGI_THREADS: requests one otp-fcgi process serves at once */
	int heartbeat_stale_s;    /* DELETER_HEARTBEAT_STALE_SECONDS */
	int deleter_poll_ms;      /* DELETER_POLL_MS: longest sleep before looking for new rows */
	int deleter_concurrency;  /* DELETER_CONCURRENCY: connections otp-deleter keeps, and its
				   * calls in flight unless a backlog waits */
	char *unknown_names;      /* names in the environment that look like settings and are
				   * none ("OTP_X, API_KEYS"), or NULL: the programs warn */
	int deleter_stop_timeout_s; /* DELETER_STOP_TIMEOUT_SECONDS: the longest drain at a stop;
				     * 0: none (pending rows wait in the store for the next start) */
};

/* Reads every setting into cfg (zeroed first). On failure returns -1 with one line naming the
 * setting in err; cfg then holds nothing to free. The token is never copied into err. A token
 * given both directly and as a file is an error naming both. */
int cfg_load(struct cfg *cfg, char *err, size_t errlen);

/* Logs what cfg_load() found worth a warning (names in the environment that are no
 * setting), once, at start. */
void cfg_log_warnings(const struct cfg *cfg);

/* 1 if host (HOST's value: an address, [v6], or localhost) is a loopback address only this
 * machine reaches; 0 for anything else (0.0.0.0, ::, another address, another name). */
int cfg_host_is_loopback(const char *host);

/* Shared hosting where the web server runs otp-fcgi as its own user and cron runs otp-deleter
 * as the account's: each takes the default database of its own uid, and they never meet.
 * otp-deleter touches its default directory with each heartbeat (cfg_touch_db_dir: 0, or -1
 * with errno), so that another user sees it live from outside without reading in it.
 * cfg_other_users_deleter: when cfg's database is that default, the uid of another user whose
 * default directory was touched within fresh_ms (its path into dir), else -1. */
int cfg_touch_db_dir(const struct cfg *cfg);
long cfg_other_users_deleter(const struct cfg *cfg, int64_t fresh_ms, char *dir, size_t len);

struct store_config;
/* The store's settings as store_open_config() takes them (pointers into cfg). */
void cfg_store_config(const struct cfg *cfg, struct store_config *sc);

/* Frees what cfg_load() allocated and wipes the token. Safe on a zeroed cfg. */
void cfg_free(struct cfg *cfg);

/* 1 if name is a setting, or a name the project's scripts read beside them; else 0. */
int cfg_is_known_name(const char *name);

/* The table of numeric settings (the settings with a fixed default), for tests and docs. */
const struct cfg_int_setting *cfg_int_settings(size_t *n);

/* Every setting's name (the keys a settings file may hold beside our scripts' names). */
const char *const *cfg_setting_names(size_t *n);

/* Reads the settings file path (OTP_ENV_FILE) as env_file_read() does: every key must be a
 * setting (cfg_is_known_name) that may stand in a file. Returns 0, or -1 with
 * "FILE:LINE: reason" in err. */
int cfg_read_env_file(const char *path, char *err, size_t errlen);

#endif
