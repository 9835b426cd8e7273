/* cfg.c — settings from the environment (and an optional env file). See cfg.h. */
#define _GNU_SOURCE
#include "cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "env_file.h"
#include "secmem.h"
#include "store.h"
#include "store_url.h"

#define DEFAULT_TEMPLATE                                                                    \
	"🔐 Your OTP is: <code>{otp}</code>\n\n⏱ Expires in {sec} seconds.\n\n"               \
	"⚠️ This message will self-destruct."

#define TMPFS_MAGIC_NUMBER 0x01021994
/* where a user without /run keeps the database by default: SHM_DIR/SHM_PREFIX<uid> */
#define SHM_DIR "/dev/shm"
#define SHM_PREFIX "otp-gateway-"

/* Every setting the programs read: the keys a settings file (OTP_ENV_FILE) may hold. */
static const char *const SETTINGS[] = {
	"API_KEY", "DEFAULT_EXPIRE_SECONDS", "DELETER_CONCURRENCY",
	"DELETER_HEARTBEAT_STALE_SECONDS", "DELETER_POLL_MS", "DELETER_STOP_TIMEOUT_SECONDS",
	"HOST", "LOG_LEVEL", "MAX_EXPIRE_SECONDS", "MESSAGE_TEMPLATE", "MIN_EXPIRE_SECONDS",
	"OTP_ALLOW_CORE_DUMPS", "OTP_API_KEYS", "OTP_API_KEYS_FILE", "OTP_BODY_TIMEOUT_SECONDS",
	"OTP_DB_PATH", "OTP_ENV_FILE",
	"OTP_FCGI_THREADS", "OTP_HOST_NAME", "OTP_KEY_LIMIT_PER_MINUTE", "OTP_REDIS_MIN_REPLICAS",
	"OTP_REDIS_PASSWORD_FILE", "OTP_REDIS_PREFIX", "OTP_REDIS_SENTINEL_PASSWORD_FILE",
	"OTP_REDIS_WAIT_MS", "OTP_SANDBOX", "OTP_STORE", "PORT",
	"RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_USER", "RATE_LIMIT_WINDOW_HOURS",
	"RATE_LIMIT_WINDOW_SECONDS", "RUNTIME_DIRECTORY", "TELEGRAM_API_BASE",
	"TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN_FILE", "TELEGRAM_CA_FILE",
	"TELEGRAM_MAX_PAUSE_SECONDS", "TELEGRAM_MAX_SENDS_PER_SECOND", "TELEGRAM_PAID_BROADCAST",
	"TELEGRAM_SEND_WAIT_MS", "TELEGRAM_TIMEOUT_SECONDS",
};

/* Names the project's own scripts read beside the settings (conf/run.sh and serve.sh, the
 * container's entrypoint, the shared-hosting wrapper): they reach the programs' environment
 * and may stand in the same file. */
static const char *const SCRIPT_NAMES[] = {
	"OTP_DELETER_BIN", "OTP_FCGI_BIN", "OTP_HOME", "OTP_LIGHTTPD_CONF", "OTP_RUN_DIR",
	"OTP_WEB_USER", "OTP_WWW_DIR", "SANDBOX_LATENCY_MS", "SERVER",
};

/* What a setting's name looks like: an unknown name with one of these prefixes in the
 * environment is most likely a mistyped setting (API_KEYS for API_KEY). The test suite's own
 * names (OTP_TEST_*, OTP_BUILD_DIR, OTP_FRONTEND) are its business. */
static const char *const SETTING_PREFIXES[] = {
	"OTP_", "TELEGRAM_", "DELETER_", "RATE_LIMIT_", "API_KEY",
};
/* Read before any settings file is: in one, they would be ignored without a word. */
static const char *const ENVIRONMENT_ONLY[] = { "OTP_ALLOW_CORE_DUMPS", "OTP_ENV_FILE" };
static const char *const TEST_PREFIXES[] = { "OTP_TEST_", "OTP_BUILD_DIR", "OTP_FRONTEND" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_list(const char *name, size_t len, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(list[i]) == len && strncmp(list[i], name, len) == 0)
			return 1;
	return 0;
}

static int has_prefix(const char *name, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strncmp(name, list[i], strlen(list[i])) == 0)
			return 1;
	return 0;
}

int cfg_is_known_name(const char *name)
{
	size_t len = strlen(name);

	return in_list(name, len, SETTINGS, COUNT(SETTINGS)) ||
	       in_list(name, len, SCRIPT_NAMES, COUNT(SCRIPT_NAMES));
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* Reads an integer setting within [min, max]; absent means def. */
static int get_int(const char *name, int def, int min, int max, int *out, char *err,
		   size_t errlen)
{
	const char *v = env(name);
	char *end;
	long long n;

	if (v == NULL) {
		*out = def;
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0') {
		snprintf(err, errlen, "%s must be an integer (got \"%.40s\")", name, v);
		return -1;
	}
	if (n < min || n > max) {
		snprintf(err, errlen, "%s must be between %d and %d (got %lld)", name, min, max, n);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int get_bool(const char *name, int *out, char *err, size_t errlen)
{
	const char *v = env(name);

	*out = 0;
	if (v == NULL || strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 ||
	    strcasecmp(v, "no") == 0)
		return 0;
	if (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0) {
		*out = 1;
		return 0;
	}
	snprintf(err, errlen, "%s must be 0 or 1 (got \"%.20s\")", name, v);
	return -1;
}

static int dup_str(const char *src, char **out, char *err, size_t errlen)
{
	*out = strdup(src);
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A token is "<bot id>:<secret>"; we check the shape only, and never echo it. */
static int token_is_well_formed(const char *t)
{
	const char *colon = strchr(t, ':');
	const char *p;

	if (colon == NULL || colon == t || colon[1] == '\0')
		return 0;
	for (p = t; p < colon; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	for (p = colon + 1; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return 0;
	return 1;
}

static int read_token_file(const char *path, char **out, char *err, size_t errlen)
{
	char buf[256];
	FILE *f = fopen(path, "r");
	size_t n;
	int rc = -1;

	if (f == NULL) {
		snprintf(err, errlen, "TELEGRAM_BOT_TOKEN_FILE: cannot open %s: %s", path,
			 strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "TELEGRAM_BOT_TOKEN_FILE: %s is empty", path);
		goto out;
	}
	rc = dup_str(buf, out, err, errlen);
out:
	secmem_wipe(buf, sizeof buf);
	fclose(f);
	return rc;
}

/* The token, from TELEGRAM_BOT_TOKEN or the file TELEGRAM_BOT_TOKEN_FILE names: never both,
 * where one would win silently (a forgotten example line over the service manager's
 * credential). env_file names the settings file, to say where each one was set. */
static int load_token(struct cfg *cfg, int token_in_env, int file_in_env, const char *env_file,
		      char *err, size_t errlen)
{
	const char *file = env("TELEGRAM_BOT_TOKEN_FILE");
	const char *tok = env("TELEGRAM_BOT_TOKEN");

	if (get_bool("OTP_SANDBOX", &cfg->sandbox, err, errlen) != 0)
		return -1;
	if (tok != NULL && file != NULL) {
		const char *in_file = env_file != NULL ? env_file : "the settings file";

		snprintf(err, errlen,
			 "TELEGRAM_BOT_TOKEN (set in %s) and TELEGRAM_BOT_TOKEN_FILE (set in %s) both "
			 "give the bot token: keep one of them",
			 token_in_env ? "the environment" : in_file,
			 file_in_env ? "the environment" : in_file);
		return -1;
	}
	if (tok != NULL) {
		if (dup_str(tok, &cfg->bot_token, err, errlen) != 0)
			return -1;
	} else if (file != NULL) {
		if (read_token_file(file, &cfg->bot_token, err, errlen) != 0)
			return -1;
	} else if (cfg->sandbox) {
		/* the emulator accepts any well-formed token */
		if (dup_str("123456:sandbox", &cfg->bot_token, err, errlen) != 0)
			return -1;
	} else {
		snprintf(err, errlen,
			 "TELEGRAM_BOT_TOKEN is not set (set it or TELEGRAM_BOT_TOKEN_FILE; "
			 "OTP_SANDBOX=1 talks to the bundled emulator instead)");
		return -1;
	}
	if (!token_is_well_formed(cfg->bot_token)) {
		snprintf(err, errlen, "TELEGRAM_BOT_TOKEN is malformed (expected <bot id>:<secret>)");
		return -1;
	}
	return 0;
}

/* TELEGRAM_CA_FILE must name a readable PEM file holding a certificate: a typo would otherwise
 * surface only as every Bot API call failing. A bundle larger than CA_FILE_MAX is refused. */
#define CA_FILE_MAX (4 << 20)
static int load_ca_file(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v = env("TELEGRAM_CA_FILE");
	char *text = NULL;
	size_t len = 0;
	int rc = -1;
	FILE *f;

	if (v == NULL || v[0] == '\0')
		return 0;
	f = fopen(v, "re");
	if (f == NULL) {
		snprintf(err, errlen, "TELEGRAM_CA_FILE: cannot open %.200s: %s", v, strerror(errno));
		return -1;
	}
	text = malloc(CA_FILE_MAX + 1);
	if (text == NULL) {
		snprintf(err, errlen, "TELEGRAM_CA_FILE: out of memory");
		goto out;
	}
	len = fread(text, 1, CA_FILE_MAX + 1, f);
	if (ferror(f) || len > CA_FILE_MAX) {
		snprintf(err, errlen, "TELEGRAM_CA_FILE: %.200s: %s", v,
			 ferror(f) ? "read error" : "larger than 4 MiB");
		goto out;
	}
	text[len] = '\0';
	if (strstr(text, "-----BEGIN CERTIFICATE-----") == NULL) {
		snprintf(err, errlen, "TELEGRAM_CA_FILE: %.200s holds no PEM certificate", v);
		goto out;
	}
	rc = dup_str(v, &cfg->ca_file, err, errlen);
out:
	free(text);
	fclose(f);
	return rc;
}

static int load_api_base(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v = env("TELEGRAM_API_BASE");
	size_t len;

	if (v == NULL) {
		if (cfg->sandbox) {
			snprintf(err, errlen,
				 "TELEGRAM_API_BASE must point at the emulator when OTP_SANDBOX=1");
			return -1;
		}
		v = "https://api.telegram.org";
	}
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
		snprintf(err, errlen, "TELEGRAM_API_BASE must start with http:// or https:// (got \"%.60s\")", v);
		return -1;
	}
	if (dup_str(v, &cfg->api_base, err, errlen) != 0)
		return -1;
	len = strlen(cfg->api_base);
	while (len > 0 && cfg->api_base[len - 1] == '/')
		cfg->api_base[--len] = '\0';
	return load_ca_file(cfg, err, errlen);
}

/* Turns the two-character sequence "\n" into a newline, so a one-line env value can hold one. */
static void unescape_newlines(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] == 'n') {
			*w++ = '\n';
			s++;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

static int load_template(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v = env("MESSAGE_TEMPLATE");

	if (dup_str(v != NULL ? v : DEFAULT_TEMPLATE, &cfg->message_template, err, errlen) != 0)
		return -1;
	unescape_newlines(cfg->message_template);
	if (strstr(cfg->message_template, "{otp}") == NULL) {
		snprintf(err, errlen, "MESSAGE_TEMPLATE must contain {otp}");
		return -1;
	}
	if (strlen(cfg->message_template) > 3000) {
		snprintf(err, errlen, "MESSAGE_TEMPLATE is longer than 3000 bytes");
		return -1;
	}
	return 0;
}

static int is_tmpfs_dir(const char *dir)
{
	struct statfs sf;

	return statfs(dir, &sf) == 0 && (unsigned long)sf.f_type == TMPFS_MAGIC_NUMBER;
}

static int usable_dir(const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return 0;
	return access(dir, W_OK | X_OK) == 0;
}

static int load_db_default(struct cfg *cfg, char *err, size_t errlen);

/* The store: OTP_STORE (sqlite:///path, a path, redis://…, redis+unix://…), else the SQLite
 * file OTP_DB_PATH or its default. db_path is set only for SQLite. */
static int load_store(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v = env("OTP_STORE");
	struct store_url *u;
	int rc = -1;

	if (v == NULL) {
		if (load_db_default(cfg, err, errlen) != 0)
			return -1;
		return dup_str(cfg->db_path, &cfg->store_url, err, errlen);
	}
	if ((u = malloc(sizeof *u)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (store_url_parse(v, u, err, errlen) != 0)
		goto out;
	if (u->kind == STORE_SQLITE && dup_str(u->path, &cfg->db_path, err, errlen) != 0)
		goto out;
	if (dup_str(v, &cfg->store_url, err, errlen) != 0)
		goto out;
	cfg->store_is_shared = store_url_is_shared(u);
	v = env("OTP_REDIS_PASSWORD_FILE");
	if (v != NULL && dup_str(v, &cfg->redis_password_file, err, errlen) != 0)
		goto out;
	v = env("OTP_REDIS_SENTINEL_PASSWORD_FILE");
	if (v != NULL && dup_str(v, &cfg->redis_sentinel_password_file, err, errlen) != 0)
		goto out;
	v = env("OTP_REDIS_PREFIX");
	if (v != NULL && dup_str(v, &cfg->redis_prefix, err, errlen) != 0)
		goto out;
	v = env("OTP_HOST_NAME");
	if (v != NULL && dup_str(v, &cfg->host_name, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	free(u);
	return rc;
}

void cfg_store_config(const struct cfg *cfg, struct store_config *sc)
{
	memset(sc, 0, sizeof *sc);
	sc->url = cfg->store_url;
	sc->redis_password_file = cfg->redis_password_file;
	sc->redis_prefix = cfg->redis_prefix;
	sc->redis_sentinel_password_file = cfg->redis_sentinel_password_file;
	sc->redis_min_replicas = cfg->redis_min_replicas;
	sc->redis_wait_ms = cfg->redis_wait_ms;
	sc->host_name = cfg->host_name;
	/* a deleter's claim outlasts the deletion call (and a wait in its queue as long) */
	sc->lease_ms = 2 * (int64_t)cfg->telegram_timeout_ms + 10000;
}

/* The default database: $RUNTIME_DIRECTORY (systemd), else /run/otp-gateway when /run is tmpfs,
 * else a private directory under /dev/shm. */
static int load_db_default(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v = env("OTP_DB_PATH");
	const char *rt = env("RUNTIME_DIRECTORY");
	char path[PATH_MAX], dir[64];
	struct stat st;

	if (v != NULL)
		return dup_str(v, &cfg->db_path, err, errlen);
	if (rt != NULL) {
		/* systemd may list several directories separated by ':' */
		snprintf(path, sizeof path, "%.*s/pending.db", (int)strcspn(rt, ":"), rt);
		return dup_str(path, &cfg->db_path, err, errlen);
	}
	if (is_tmpfs_dir("/run") && usable_dir("/run/otp-gateway"))
		return dup_str("/run/otp-gateway/pending.db", &cfg->db_path, err, errlen);
	snprintf(dir, sizeof dir, SHM_DIR "/" SHM_PREFIX "%u", (unsigned)getuid());
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "OTP_DB_PATH is not set and %s cannot be created: %s", dir,
			 strerror(errno));
		return -1;
	}
	/* anyone may create that name in /dev/shm first: it must be a real directory of ours
	 * that no one else may write (the store checks the owner and mode again at each open) */
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 022) != 0) {
		snprintf(err, errlen, "OTP_DB_PATH is not set and %s is not a directory of ours "
				      "(another user made it?): refusing it", dir);
		return -1;
	}
	snprintf(path, sizeof path, "%s/pending.db", dir);
	cfg->db_in_user_shm_dir = 1;
	return dup_str(path, &cfg->db_path, err, errlen);
}

/* The directory part of the database's path, into dir. Returns 0, or -1 if it does not fit. */
static int db_dir(const struct cfg *cfg, char *dir, size_t len)
{
	const char *slash = cfg->db_path != NULL ? strrchr(cfg->db_path, '/') : NULL;

	if (slash == NULL || (size_t)(slash - cfg->db_path) >= len)
		return -1;
	memcpy(dir, cfg->db_path, (size_t)(slash - cfg->db_path));
	dir[slash - cfg->db_path] = '\0';
	return 0;
}

int cfg_touch_db_dir(const struct cfg *cfg)
{
	char dir[PATH_MAX];

	if (!cfg->db_in_user_shm_dir || db_dir(cfg, dir, sizeof dir) != 0)
		return 0;
	return utimensat(AT_FDCWD, dir, NULL, 0);
}

long cfg_other_users_deleter(const struct cfg *cfg, int64_t fresh_ms, char *dir, size_t len)
{
	struct timespec now;
	struct dirent *e;
	struct stat st;
	DIR *d;
	long found = -1;

	if (!cfg->db_in_user_shm_dir || (d = opendir(SHM_DIR)) == NULL)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	while (found < 0 && (e = readdir(d)) != NULL) {
		const char *digits = e->d_name + strlen(SHM_PREFIX);
		char *end;
		unsigned long uid;
		int64_t age_ms;

		if (strncmp(e->d_name, SHM_PREFIX, strlen(SHM_PREFIX)) != 0 ||
		    !isdigit((unsigned char)*digits))
			continue;
		errno = 0;
		uid = strtoul(digits, &end, 10);
		/* only a default directory its own user made: the name says whose it is */
		if (errno != 0 || *end != '\0' || uid == (unsigned long)geteuid() ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISDIR(st.st_mode) || (unsigned long)st.st_uid != uid)
			continue;
		age_ms = ((int64_t)now.tv_sec - st.st_mtim.tv_sec) * 1000 +
			 (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
		if (age_ms <= fresh_ms) {
			found = (long)uid;
			snprintf(dir, len, SHM_DIR "/%s", e->d_name);
		}
	}
	closedir(d);
	return found;
}

/* Paid broadcast lifts Telegram's limit to 1,000 messages/s: the budget and the calls in flight
 * default to what that rate needs at the Bot API's usual latency (rate × latency calls at
 * once, over 2 otp-fcgi processes, and deletions alike); docs/performance.md has the figures. */
#define PAID_SENDS_PER_SECOND 1000
#define PAID_FCGI_THREADS 256
#define PAID_DELETER_CONCURRENCY 384

#define FIELD(f) offsetof(struct cfg, f)

/* The numeric settings, in the order they are read: the docs' settings table shows these
 * defaults (a unit test compares them). */
static const struct cfg_int_setting INT_SETTINGS[] = {
	{ "MIN_EXPIRE_SECONDS", 5, 5, 1, 86400, FIELD(min_expire_s) },
	{ "MAX_EXPIRE_SECONDS", 60, 60, 1, 86400, FIELD(max_expire_s) },
	{ "DEFAULT_EXPIRE_SECONDS", 30, 30, 1, 86400, FIELD(default_expire_s) },
	{ "RATE_LIMIT_PER_USER", 5, 5, 1, 1000000, FIELD(rate_limit_per_user) },
	{ "RATE_LIMIT_WINDOW_HOURS", 1, 1, 1, 24 * 366, FIELD(rate_limit_window_hours) },
	{ "RATE_LIMIT_PER_IP", 10, 10, 0, 1000000, FIELD(rate_limit_per_ip) },
	{ "PORT", 55155, 55155, 1, 65535, FIELD(port) },
	{ "TELEGRAM_TIMEOUT_SECONDS", 5, 5, 1, 120, FIELD(telegram_timeout_s) },
	{ "OTP_BODY_TIMEOUT_SECONDS", 5, 5, 1, 300, FIELD(body_timeout_s) },
	{ "TELEGRAM_MAX_SENDS_PER_SECOND", 30, PAID_SENDS_PER_SECOND, 1, 10000,
	  FIELD(max_sends_per_second) },
	{ "TELEGRAM_SEND_WAIT_MS", 2000, 2000, 0, 30000, FIELD(send_wait_ms) },
	{ "TELEGRAM_MAX_PAUSE_SECONDS", 3600, 3600, 1, 7 * 86400, FIELD(max_pause_s) },
	{ "OTP_FCGI_THREADS", 16, PAID_FCGI_THREADS, 1, 1024, FIELD(fcgi_threads) },
	{ "OTP_KEY_LIMIT_PER_MINUTE", 0, 0, 0, 1000000, FIELD(key_limit_per_minute) },
	{ "DELETER_HEARTBEAT_STALE_SECONDS", 10, 10, 2, 3600, FIELD(heartbeat_stale_s) },
	{ "DELETER_POLL_MS", 250, 250, 10, 250, FIELD(deleter_poll_ms) },
	{ "DELETER_CONCURRENCY", 16, PAID_DELETER_CONCURRENCY, 1, DELETER_CONCURRENCY_MAX,
	  FIELD(deleter_concurrency) },
	{ "OTP_REDIS_WAIT_MS", 1000, 1000, 1, STORE_REDIS_WAIT_MS_MAX, FIELD(redis_wait_ms) },
};

const char *const *cfg_setting_names(size_t *n)
{
	*n = COUNT(SETTINGS);
	return SETTINGS;
}

const struct cfg_int_setting *cfg_int_settings(size_t *n)
{
	*n = COUNT(INT_SETTINGS);
	return INT_SETTINGS;
}

static int load_numbers(struct cfg *cfg, char *err, size_t errlen)
{
	int window_s;
	size_t i;

	if (get_bool("TELEGRAM_PAID_BROADCAST", &cfg->paid_broadcast, err, errlen) != 0)
		return -1;
	for (i = 0; i < COUNT(INT_SETTINGS); i++) {
		const struct cfg_int_setting *t = &INT_SETTINGS[i];

		if (get_int(t->name, cfg->paid_broadcast ? t->paid_def : t->def, t->min, t->max,
			    (int *)((char *)cfg + t->offset), err, errlen) != 0)
			return -1;
	}
	/* no fixed default: -1 lets the store decide by the primary's replicas */
	if (get_int("OTP_REDIS_MIN_REPLICAS", -1, 0, STORE_REDIS_REPLICAS_MAX,
		    &cfg->redis_min_replicas, err, errlen) != 0)
		return -1;
	/* no default: when set, it overrides RATE_LIMIT_WINDOW_HOURS */
	if (get_int("RATE_LIMIT_WINDOW_SECONDS", 0, 1, 366 * 86400, &window_s, err, errlen) != 0)
		return -1;
	if (cfg->min_expire_s > cfg->max_expire_s) {
		snprintf(err, errlen, "MIN_EXPIRE_SECONDS (%d) is above MAX_EXPIRE_SECONDS (%d)",
			 cfg->min_expire_s, cfg->max_expire_s);
		return -1;
	}
	if (cfg->default_expire_s < cfg->min_expire_s || cfg->default_expire_s > cfg->max_expire_s) {
		snprintf(err, errlen, "DEFAULT_EXPIRE_SECONDS must be between %d and %d (got %d)",
			 cfg->min_expire_s, cfg->max_expire_s, cfg->default_expire_s);
		return -1;
	}
	/* by default a stop waits for the last code a client can have been given, with room for
	 * its deletion call */
	if (get_int("DELETER_STOP_TIMEOUT_SECONDS", cfg->max_expire_s + 10, 0, 90000,
		    &cfg->deleter_stop_timeout_s, err, errlen) != 0)
		return -1;
	cfg->telegram_timeout_ms = cfg->telegram_timeout_s * 1000;
	cfg->body_timeout_ms = cfg->body_timeout_s * 1000;
	cfg->rate_limit_window_s =
		env("RATE_LIMIT_WINDOW_SECONDS") != NULL ? window_s : cfg->rate_limit_window_hours * 3600;
	return 0;
}

/* Names in the environment that look like settings and are none, as "A, B" (NULL: none). */
static int find_unknown_names(struct cfg *cfg, char *err, size_t errlen)
{
	extern char **environ;
	size_t used = 0, len;
	char **e, *p;

	for (e = environ; *e != NULL; e++) {
		len = strcspn(*e, "=");
		if (!has_prefix(*e, SETTING_PREFIXES, COUNT(SETTING_PREFIXES)) ||
		    has_prefix(*e, TEST_PREFIXES, COUNT(TEST_PREFIXES)) ||
		    in_list(*e, len, SETTINGS, COUNT(SETTINGS)) ||
		    in_list(*e, len, SCRIPT_NAMES, COUNT(SCRIPT_NAMES)))
			continue;
		if (used > 1000)
			break; /* enough to be told */
		p = realloc(cfg->unknown_names, used + len + 3);
		if (p == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		cfg->unknown_names = p;
		used += (size_t)snprintf(p + used, len + 3, "%s%.*s", used > 0 ? ", " : "",
					 (int)len, *e);
	}
	return 0;
}

int cfg_load(struct cfg *cfg, char *err, size_t errlen)
{
	const char *v;
	int token_in_env = env("TELEGRAM_BOT_TOKEN") != NULL;
	int file_in_env = env("TELEGRAM_BOT_TOKEN_FILE") != NULL;

	memset(cfg, 0, sizeof *cfg);
	v = env("OTP_ENV_FILE");
	if (v != NULL && cfg_read_env_file(v, err, errlen) != 0)
		goto fail;
	if (load_token(cfg, token_in_env, file_in_env, v, err, errlen) != 0 ||
	    find_unknown_names(cfg, err, errlen) != 0 || load_api_base(cfg, err, errlen) != 0 ||
	    load_numbers(cfg, err, errlen) != 0 || load_template(cfg, err, errlen) != 0 ||
	    load_store(cfg, err, errlen) != 0)
		goto fail;
	v = env("LOG_LEVEL");
	cfg->log_level = LOG_INFO;
	if (v != NULL && log_level_parse(v, &cfg->log_level) != 0) {
		snprintf(err, errlen, "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got \"%.20s\")", v);
		goto fail;
	}
	v = env("API_KEY");
	if (v != NULL && dup_str(v, &cfg->api_key, err, errlen) != 0)
		goto fail;
	v = env("OTP_API_KEYS");
	if (v != NULL && dup_str(v, &cfg->api_keys, err, errlen) != 0)
		goto fail;
	v = env("OTP_API_KEYS_FILE");
	if (v != NULL && dup_str(v, &cfg->api_keys_file, err, errlen) != 0)
		goto fail;
	v = env("HOST");
	if (dup_str(v != NULL ? v : "127.0.0.1", &cfg->host, err, errlen) != 0)
		goto fail;
	return 0;
fail:
	cfg_free(cfg);
	return -1;
}

int cfg_host_is_loopback(const char *host)
{
	char buf[INET6_ADDRSTRLEN + 2];
	unsigned char a[16];
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0 ||
	    strcasecmp(host, "ip6-localhost") == 0)
		return 1;
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { /* [::1] */
		if (n - 2 >= sizeof buf)
			return 0;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		if (memcmp(a, v4mapped, sizeof v4mapped) == 0)
			return a[12] == 127;
		return memcmp(a, in6addr_loopback.s6_addr, 16) == 0;
	}
	return 0; /* 0.0.0.0, ::, an interface's address or a name: reachable from elsewhere */
}

void cfg_log_warnings(const struct cfg *cfg)
{
	if (cfg->unknown_names != NULL)
		log_msg(LOG_WARNING, "not a setting, ignored (mistyped?): %s", cfg->unknown_names);
}

void cfg_free(struct cfg *cfg)
{
	secmem_free_str(cfg->bot_token);
	secmem_free_str(cfg->api_key);
	secmem_free_str(cfg->api_keys);
	free(cfg->api_keys_file);
	free(cfg->api_base);
	free(cfg->ca_file);
	free(cfg->host);
	free(cfg->message_template);
	free(cfg->db_path);
	free(cfg->store_url);
	free(cfg->redis_password_file);
	free(cfg->redis_prefix);
	free(cfg->redis_sentinel_password_file);
	free(cfg->host_name);
	free(cfg->unknown_names);
	memset(cfg, 0, sizeof *cfg);
}

/* What the settings file may set: settings and our scripts' names, not the names read
 * from the environment only. Returns 0, or -1 with why key is refused in why. */
static int refuse_in_file(const char *key, void *ctx, char *why, size_t whylen)
{
	(void)ctx;
	/* a mistyped key (API_KEYS for API_KEY) must not pass for a setting */
	if (!cfg_is_known_name(key)) {
		snprintf(why, whylen, "unknown setting %s", key);
		return -1;
	}
	if (in_list(key, strlen(key), ENVIRONMENT_ONLY, COUNT(ENVIRONMENT_ONLY))) {
		snprintf(why, whylen, "%s is read from the environment only", key);
		return -1;
	}
	return 0;
}

int cfg_read_env_file(const char *path, char *err, size_t errlen)
{
	return env_file_read(path, "OTP_ENV_FILE", refuse_in_file, NULL, err, errlen);
}
