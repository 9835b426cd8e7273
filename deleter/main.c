/* main.c — otp-deleter: the daemon that deletes sent OTP messages when their time comes.
 *
 * It sleeps until the earliest due row (but at most DELETER_POLL_MS, to notice new rows), reaps
 * what is due, beats its heartbeat (otp-fcgi refuses to send while it is stale) and prunes old
 * rate-limit events. One instance runs per database (a lock file beside it); --run-for N exits
 * after N seconds, for cron-driven shared hosting. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "reap.h"
#include "secmem.h"
#include "store.h"
#include "tg.h"

#define PROGRAM "otp-deleter"
#define HEARTBEAT_EVERY_MS 1000
#define HEARTBEAT_LOOK_MS 250
#define PRUNE_EVERY_MS 10000
#define REAP_BATCH 500
#define STORE_ERROR_BACKOFF_MS 1000
#define LOCK_WAIT_MS 15000

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reopen_requested;

struct options {
	long run_for_s;        /* 0: run until a signal */
	const char *log_file;  /* NULL: stderr */
};

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_hup(int sig)
{
	(void)sig;
	reopen_requested = 1;
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a sleep ends at once */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int open_log(const char *path)
{
	int fd;

	if (path == NULL)
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_msg(LOG_ERROR, "cannot open log file %s: %s", path, strerror(errno));
		return -1;
	}
	if (dup2(fd, 2) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* One deleter per database: a second would delete the same rows twice. Waits up to wait_ms
 * for the lock (under cron, the previous run is still finishing when the next starts).
 * Returns the lock's fd, -2 when another instance holds it, -1 on error. */
static int take_lock(const char *db_path, int64_t wait_ms)
{
	int64_t deadline = clock_mono_ms() + wait_ms;
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof path, "%s.deleter.lock", db_path) >= (int)sizeof path)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_msg(LOG_ERROR, "cannot open lock file %s: %s", path, strerror(errno));
		return -1;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int busy = errno == EWOULDBLOCK;

		if (!busy || clock_mono_ms() >= deadline || stop_requested) {
			close(fd);
			return busy ? -2 : -1;
		}
		clock_sleep_ms(50);
	}
	return fd;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	int i;
	char *end;

	memset(o, 0, sizeof *o);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--run-for") == 0 && i + 1 < argc) {
			o->run_for_s = strtol(argv[++i], &end, 10);
			if (*end != '\0' || o->run_for_s <= 0)
				return -1;
		} else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc) {
			o->log_file = argv[++i];
		} else {
			return -1;
		}
	}
	return 0;
}

/* How long to sleep: until the next due row (not before a 429 pause ends), at most poll_ms so
 * that rows added meanwhile are seen in time. */
static int64_t sleep_for(struct store *s, int64_t now, int64_t pause_until, int poll_ms)
{
	int64_t next = 0, wait = poll_ms;

	if (store_pending_next(s, &next) == 1) {
		if (next < pause_until)
			next = pause_until;
		if (next - now < wait)
			wait = next - now;
	}
	return wait < 1 ? 1 : wait;
}

/* What the daemon does besides deleting: run between passes and between the steps of one. */
struct housekeeping {
	const struct policy *policy;
	const struct options *opt;
	struct store *store;
	int64_t started_ms, last_beat_ms, last_prune_ms, last_look_ms; /* clock_mono_ms() */
};

/* The heartbeat (otp-fcgi stops sending while it is stale): every second, and at once when a
 * new database file has none (looked at every HEARTBEAT_LOOK_MS: a read, no write). Metrics go
 * with it; metrics_flush writes only when there are counts. */
static void beat(struct housekeeping *h, int64_t now)
{
	int64_t at;

	if (now - h->last_beat_ms < HEARTBEAT_EVERY_MS) {
		if (now - h->last_look_ms < HEARTBEAT_LOOK_MS)
			return;
		h->last_look_ms = now;
		if (store_heartbeat_get(h->store, PROGRAM, &at) != 0)
			return; /* there (or unreadable: the write below would fail too) */
	}
	if (store_heartbeat_set(h->store, PROGRAM, clock_now_ms()) != 0)
		log_msg(LOG_ERROR, "writing the heartbeat: %s", store_strerror(h->store));
	else
		h->last_beat_ms = h->last_look_ms = now;
	if (metrics_flush(h->store) != 0)
		log_msg(LOG_WARNING, "flushing metrics: %s", store_strerror(h->store));
}

static void housekeep(struct housekeeping *h)
{
	int64_t now = clock_mono_ms();

	if (h->opt->run_for_s > 0 && now - h->started_ms >= h->opt->run_for_s * 1000)
		stop_requested = 1;
	if (reopen_requested) {
		reopen_requested = 0;
		open_log(h->opt->log_file);
	}
	beat(h, now);
	if (now - h->last_prune_ms >= PRUNE_EVERY_MS) {
		if (policy_prune(h->policy, h->store, clock_now_ms()) < 0)
			log_msg(LOG_WARNING, "pruning rate-limit events: %s",
				store_strerror(h->store));
		h->last_prune_ms = now;
	}
}

/* The loop: housekeeping, then one step of the pass under way, or a new pass, or a sleep until
 * the next row is due. A store failure backs off for a second (not hammering the database, nor
 * Telegram with deletions whose rows cannot be updated). */
static int run(const struct cfg *cfg, const struct options *o, struct store *s,
	       struct tg_batch *batch)
{
	int64_t t0 = clock_mono_ms();
	struct policy policy;
	struct housekeeping h = { &policy, o, s, t0, t0 - HEARTBEAT_EVERY_MS, t0 - PRUNE_EVERY_MS, t0 };
	struct reaper r;
	int n;

	policy_from_cfg(&policy, cfg);
	reap_init(&r, s, &policy, batch, &reap_tg_batch_ops, &stop_requested,
		  (unsigned int)(clock_now_ms() ^ getpid()));
	for (;;) {
		housekeep(&h);
		if (reap_busy(&r)) {
			n = reap_step(&r, REAP_FETCH_EVERY_MS);
			if (n <= 0) {
				if (metrics_flush(s) != 0)
					log_msg(LOG_WARNING, "flushing metrics: %s",
						store_strerror(s));
				/* give back what the pass took: after a backlog (thousands of
				 * queued calls and their rows) glibc keeps the freed heap, ~1.5
				 * MiB more RSS for good (make soak) */
				malloc_trim(0);
			}
			if (n < 0)
				clock_sleep_ms(STORE_ERROR_BACKOFF_MS);
			continue; /* a pass that ended: look at once for more due rows */
		}
		if (stop_requested)
			break;
		n = reap_pass(&r, clock_now_ms(), REAP_BATCH);
		if (n < 0) {
			clock_sleep_ms(STORE_ERROR_BACKOFF_MS);
			continue;
		}
		if (n == 0)
			clock_sleep_ms(sleep_for(s, clock_now_ms(), r.pause_until_ms,
						 cfg->deleter_poll_ms));
	}
	metrics_flush(s);
	log_json(LOG_INFO, "otp-deleter stopping",
		 json_pack("{s:I, s:I, s:I}", "deleted", (json_int_t)r.stats.deleted,
			   "failed_permanently", (json_int_t)r.stats.failed_permanently, "retried",
			   (json_int_t)r.stats.retried));
	reap_free(&r);
	return 0;
}

int main(int argc, char **argv)
{
	struct cfg cfg;
	struct options opt;
	struct store *s = NULL;
	struct store_config sc;
	struct tg *tg = NULL;
	struct tg_batch *batch = NULL;
	char err[512];
	int lock_fd = -1, rc = 1;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("otp-deleter 1.0.0\n");
		return 0;
	}
	if (parse_args(argc, argv, &opt) != 0) {
		fprintf(stderr, "usage: otp-deleter [--run-for SECONDS] [--log-file PATH]\n");
		return 2;
	}
	secmem_install_json_allocator();
	log_init(PROGRAM, LOG_INFO);
	switch (secmem_forbid_core_dumps(err, sizeof err)) {
	case -1:
		log_msg(LOG_ERROR, "turning core dumps off: %s", err);
		return 1;
	case 1:
		log_msg(LOG_WARNING, "core dumps allowed (OTP_ALLOW_CORE_DUMPS=1): a core holds the "
				     "bot token and recent OTPs");
		break;
	}
	if (open_log(opt.log_file) != 0)
		return 1;
	if (cfg_load(&cfg, err, sizeof err) != 0) {
		log_msg(LOG_ERROR, "configuration: %s", err);
		return 1;
	}
	log_init(PROGRAM, cfg.log_level);
	install_signals();
	/* one otp-deleter per SQLite file; with Redis, one per host or more: they claim rows
	 * with a lease (store.h), so they share the work instead of excluding each other */
	if (!cfg.store_is_redis) {
		lock_fd = take_lock(cfg.db_path, opt.run_for_s > 0 ? LOCK_WAIT_MS : 0);
		if (lock_fd == -2) {
			log_msg(opt.run_for_s > 0 ? LOG_DEBUG : LOG_ERROR,
				"another otp-deleter is running for %s", cfg.db_path);
			rc = opt.run_for_s > 0 ? 0 : 1; /* under cron: the running one does the work */
			goto out;
		}
		if (lock_fd < 0)
			goto out;
	}
	if (tg_global_init() != 0)
		goto out;
	cfg_store_config(&cfg, &sc);
	s = store_open_config(&sc, err, sizeof err);
	if (s == NULL) {
		log_msg(LOG_ERROR, "opening the database: %s", err);
		goto out;
	}
	if (store_is_on_tmpfs(s) == 0)
		log_msg(LOG_WARNING, "the database %s is not on tmpfs: its rows reach the disk",
			cfg.db_path);
	tg = tg_new(cfg.api_base, cfg.bot_token, cfg.telegram_timeout_ms);
	if (tg != NULL && (cfg.ca_file == NULL || tg_set_ca_file(tg, cfg.ca_file) == 0))
		batch = tg_batch_new(tg, cfg.deleter_concurrency);
	if (batch == NULL) {
		log_msg(LOG_ERROR, "cannot create the Bot API client");
		goto out;
	}
	log_json(LOG_INFO, "otp-deleter started",
		 json_pack("{s:s, s:s, s:i, s:i}", "database", cfg.store_url, "mode",
			   cfg.sandbox ? "sandbox" : "live", "poll_ms", cfg.deleter_poll_ms,
			   "concurrency", cfg.deleter_concurrency));
	rc = run(&cfg, &opt, s, batch);
out:
	tg_batch_free(batch);
	tg_free(tg);
	store_close(s);
	if (lock_fd >= 0)
		close(lock_fd);
	cfg_free(&cfg);
	tg_global_cleanup();
	return rc;
}
