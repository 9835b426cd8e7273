/* main.c — otp-deleter: the daemon that deletes sent OTP messages when their time comes.
 *
 * It sleeps until the earliest due row (but at most DELETER_POLL_MS, to notice new rows), reaps
 * what is due, beats its heartbeat (otp-fcgi refuses to send while it is stale) and prunes old
 * rate-limit events. One instance runs per database (a lock file beside it); --run-for N exits
 * after N seconds, for cron-driven shared hosting, and hands what is pending to the next run.
 *
 * A stop (SIGTERM, SIGINT, or --drain) drains: the rows pending when it came are deleted at
 * their delete_at, the heartbeat going on meanwhile, within DELETER_STOP_TIMEOUT_SECONDS; what
 * would fall due after that is deleted early, shortly before it ends. Rows added after the stop
 * that fall due later are left to the next otp-deleter (a restart under traffic deletes
 * nothing early). A second SIGINT ends the drain at once. */
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
#include <sys/stat.h>
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

#define HEARTBEAT_EVERY_MS 1000
#define HEARTBEAT_LOOK_MS 250
#define PRUNE_EVERY_MS 10000
#define REAP_BATCH 500
#define STORE_ERROR_BACKOFF_MS 1000
#define LOCK_WAIT_MS 15000

static volatile sig_atomic_t stop_requested; /* SIGTERM, SIGINT: drain, then exit */
static volatile sig_atomic_t stop_now;       /* a second SIGINT (Ctrl-C again): exit at once */
static volatile sig_atomic_t reopen_requested;
/* the reaper starts no new call once this is set: the end of the drain or of --run-for */
static volatile sig_atomic_t reap_halt;

struct options {
	long run_for_s;        /* 0: run until a signal */
	int drain;             /* --drain: drain at once, then exit */
	const char *log_file;  /* NULL: stderr */
};

static void on_stop(int sig)
{
	if (sig == SIGINT && stop_requested)
		stop_now = 1;
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
 * The lock file is made beside the database, so the directory is checked first (ours alone,
 * as opening the database checks it), and a symbolic link in its place is refused rather
 * than followed: creating the file it points to would make one wherever its planter chose.
 * Returns the lock's fd, -2 when another instance holds it, -1 on error (logged). */
static int take_lock(const char *db_path, int64_t wait_ms)
{
	int64_t deadline = clock_mono_ms() + wait_ms;
	char path[PATH_MAX], err[512];
	struct stat st;
	int fd;

	if (snprintf(path, sizeof path, "%s.deleter.lock", db_path) >= (int)sizeof path) {
		log_msg(LOG_ERROR, "lock file path too long for database %s", db_path);
		return -1;
	}
	if (store_check_db_dir(db_path, err, sizeof err) != 0) {
		log_msg(LOG_ERROR, "%s", err);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ELOOP) {
		log_msg(LOG_ERROR, "lock file %s is a symbolic link: refusing it (remove it; "
				   "otp-deleter makes its own)", path);
		return -1;
	}
	if (fd < 0) {
		log_msg(LOG_ERROR, "cannot open lock file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		log_msg(LOG_ERROR, "lock file %s is not a regular file: refusing it", path);
		close(fd);
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
		} else if (strcmp(argv[i], "--drain") == 0) {
			o->drain = 1;
		} else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc) {
			o->log_file = argv[++i];
		} else {
			return -1;
		}
	}
	return o->drain && o->run_for_s > 0 ? -1 : 0;
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
	const struct cfg *cfg;
	const struct policy *policy;
	const struct options *opt;
	struct store *store;
	int64_t started_ms, last_beat_ms, last_prune_ms, last_look_ms; /* clock_mono_ms() */
	int run_over;                        /* --run-for's time is up */
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
		if (store_heartbeat_get(h->store, POLICY_DELETER_NAME, &at) != 0)
			return; /* there (or unreadable: the write below would fail too) */
	}
	if (store_heartbeat_set(h->store, POLICY_DELETER_NAME, clock_now_ms()) != 0) {
		log_msg(LOG_ERROR, "writing the heartbeat: %s", store_strerror(h->store));
	} else {
		h->last_beat_ms = h->last_look_ms = now;
		/* seen from outside by an otp-fcgi of another user (cfg.h) */
		if (cfg_touch_db_dir(h->cfg) != 0)
			log_msg(LOG_DEBUG, "touching the database's directory: %s", strerror(errno));
	}
	if (metrics_flush(h->store) != 0)
		log_msg(LOG_WARNING, "flushing metrics: %s", store_strerror(h->store));
}

static void housekeep(struct housekeeping *h)
{
	int64_t now = clock_mono_ms();

	if (h->opt->run_for_s > 0 && now - h->started_ms >= h->opt->run_for_s * 1000)
		h->run_over = 1;
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

/* A stop under way (see the top of this file). */
struct drain {
	int on;
	int64_t early_from_ms;  /* clock_mono_ms(): from here, what is left is deleted early */
	int64_t deadline_ms;    /* clock_mono_ms(): the stop timeout ends */
	int64_t horizon_ms;     /* wall clock: the latest next try of a row pending at the stop */
};

/* Starts the drain: notes the last row pending now, and when to give up waiting for it. The
 * early deletion starts one Bot API timeout (plus a second) before the stop timeout ends, so
 * that its calls finish within it. */
static void drain_begin(struct drain *d, const struct cfg *cfg, struct store *s,
			struct reaper *r)
{
	int64_t now = clock_now_ms(), budget = (int64_t)cfg->deleter_stop_timeout_s * 1000;
	int64_t margin = cfg->telegram_timeout_ms + 1000;
	long long pending = store_pending_count(s);
	int found = store_pending_last(s, &d->horizon_ms);

	if (margin > budget / 2)
		margin = budget / 2;
	d->on = 1;
	d->deadline_ms = clock_mono_ms() + budget;
	d->early_from_ms = d->deadline_ms - margin;
	if (found < 0) {
		/* unknown: wait for any row a client can have been given by now */
		log_msg(LOG_ERROR, "reading the pending deletions at the stop: %s",
			store_strerror(s));
		d->horizon_ms = now + (int64_t)cfg->max_expire_s * 1000;
	} else if (found == 0) {
		d->horizon_ms = 0;
	}
	r->last_retry_ms = 0;
	log_json(LOG_INFO, "otp-deleter stopping: deleting the pending messages at their delete_at",
		 json_pack("{s:I, s:f, s:i}", "pending", (json_int_t)pending, "wait_seconds",
			   d->horizon_ms > now ? (double)(d->horizon_ms - now) / 1000.0 : 0.0,
			   "stop_timeout_seconds", cfg->deleter_stop_timeout_s));
}

/* Instants a shared store (Redis) hands back are on its clock, turned into ours through the
 * durations of two calls: a row's next try read back may differ from the one we gave by up to a
 * round trip, and must not pass for a row after the horizon. */
#define DRAIN_CLOCK_SLACK_MS 1000

/* An instant of the drain as the store's instants read back may give it. */
static int64_t drain_slack(struct store *s, int64_t instant)
{
	return store_is_shared(s) ? instant + DRAIN_CLOCK_SLACK_MS : instant;
}

/* 1 when no row the drain waits for is left: every row still pending is due after the horizon
 * (a row added since the stop, for the next otp-deleter), or none is. A row of the drain whose
 * deletion failed moves the horizon to its retry. 0 while some are left or when the store
 * cannot tell. */
static int drain_done(const struct drain *d, struct store *s, const struct reaper *r)
{
	int64_t next = 0, horizon = drain_slack(s, d->horizon_ms > r->last_retry_ms ?
						   d->horizon_ms : r->last_retry_ms);

	switch (store_pending_next(s, &next)) {
	case 0:
		return 1;
	case 1:
		return next > horizon;
	default:
		log_msg(LOG_ERROR, "reading the next deletion: %s", store_strerror(s));
		return 0;
	}
}

/* What a drain did, logged once at its end. */
static void drain_report(const struct drain *d, const struct cfg *cfg, struct store *s,
			 const struct reaper *r)
{
	if (r->stats.deleted_early > 0)
		log_json(LOG_WARNING, "stop timeout shorter than the wait: messages deleted before "
				      "their delete_at",
			 json_pack("{s:I, s:i}", "deleted_early", (json_int_t)r->stats.deleted_early,
				   "stop_timeout_seconds", cfg->deleter_stop_timeout_s));
	if (!drain_done(d, s, r))
		log_json(LOG_ERROR, "the stop ended with messages still to delete: their rows wait "
				    "in the store for the next otp-deleter",
			 json_pack("{s:I, s:s, s:i}", "pending", (json_int_t)store_pending_count(s),
				   "ended_by", stop_now ? "second SIGINT" : "stop timeout",
				   "stop_timeout_seconds", cfg->deleter_stop_timeout_s));
}

/* The loop: housekeeping, then one step of the pass under way, or a new pass, or a sleep until
 * the next row is due. A store failure backs off for a second (not hammering the database, nor
 * Telegram with deletions whose rows cannot be updated). After a stop the loop goes on as a
 * drain; in its last part (early) a pass takes every row due by the horizon. */
static int run(const struct cfg *cfg, const struct options *o, struct store *s,
	       struct tg_batch *batch)
{
	int64_t t0 = clock_mono_ms(), now;
	struct policy policy;
	struct housekeeping h = { cfg, &policy, o, s, t0, t0 - HEARTBEAT_EVERY_MS,
				  t0 - PRUNE_EVERY_MS, t0, 0 };
	struct drain d = { 0 };
	struct reaper r;
	long long left;
	int n;

	policy_from_cfg(&policy, cfg);
	reap_init(&r, s, &policy, batch, &reap_tg_batch_ops, &reap_halt,
		  (unsigned int)(clock_now_ms() ^ getpid()));
	for (;;) {
		housekeep(&h);
		if (stop_requested && !d.on && !reap_halt) {
			if (cfg->deleter_stop_timeout_s > 0)
				drain_begin(&d, cfg, s, &r);
			else
				reap_halt = 1;
		}
		if (stop_now || (h.run_over && !d.on) || (d.on && clock_mono_ms() >= d.deadline_ms))
			reap_halt = 1;
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
		if (reap_halt || (d.on && drain_done(&d, s, &r)))
			break;
		now = clock_now_ms();
		/* the stop cannot wait for them: delete them now (with the slack drain_done()
		 * allows: a row a shared store hands back a few ms past the horizon is one of them) */
		if (d.on && clock_mono_ms() >= d.early_from_ms && drain_slack(s, d.horizon_ms) > now)
			now = drain_slack(s, d.horizon_ms);
		n = reap_pass(&r, now, REAP_BATCH);
		if (n < 0) {
			clock_sleep_ms(STORE_ERROR_BACKOFF_MS);
			continue;
		}
		if (n == 0)
			clock_sleep_ms(sleep_for(s, clock_now_ms(), r.pause_until_ms,
						 cfg->deleter_poll_ms));
	}
	if (d.on)
		drain_report(&d, cfg, s, &r);
	metrics_flush(s);
	left = store_pending_count(s);
	log_json(LOG_INFO, "otp-deleter stopping",
		 json_pack("{s:I, s:I, s:I, s:I, s:I}", "deleted", (json_int_t)r.stats.deleted,
			   "deleted_early", (json_int_t)r.stats.deleted_early,
			   "failed_permanently", (json_int_t)r.stats.failed_permanently, "retried",
			   (json_int_t)r.stats.retried, "pending_left", (json_int_t)left));
	reap_free(&r);
	return 0;
}

/* Calls in flight while a backlog waits (many deletions due in the same second): a few
 * times the steady pool, so that a burst is worked off within the deletion deadline, bounded
 * like the setting itself. */
static int backlog_concurrency(int steady)
{
	return steady > DELETER_CONCURRENCY_MAX / 4 ? DELETER_CONCURRENCY_MAX : steady * 4;
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
		fprintf(stderr, "usage: otp-deleter [--run-for SECONDS | --drain] [--log-file PATH]\n");
		return 2;
	}
	secmem_install_json_allocator();
	log_init(POLICY_DELETER_NAME, LOG_INFO);
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
	log_init(POLICY_DELETER_NAME, cfg.log_level);
	cfg_log_warnings(&cfg);
	install_signals();
	/* one otp-deleter per SQLite file; with Redis, one per host or more: they claim rows
	 * with a lease (store.h), so they share the work instead of excluding each other */
	if (!cfg.store_is_shared) {
		/* --drain waits for a --run-for run to end (its pending rows are what it is for) */
		lock_fd = take_lock(cfg.db_path, opt.drain ? (int64_t)cfg.deleter_stop_timeout_s * 1000
					  : opt.run_for_s > 0 ? LOCK_WAIT_MS : 0);
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
		batch = tg_batch_new(tg, cfg.deleter_concurrency,
				     backlog_concurrency(cfg.deleter_concurrency));
	if (batch == NULL) {
		log_msg(LOG_ERROR, "cannot create the Bot API client");
		goto out;
	}
	log_json(LOG_INFO, "otp-deleter started",
		 json_pack("{s:s, s:s, s:i, s:i, s:i}", "database", cfg.store_url, "mode",
			   cfg.sandbox ? "sandbox" : "live", "poll_ms", cfg.deleter_poll_ms,
			   "concurrency", cfg.deleter_concurrency, "stop_timeout_seconds",
			   cfg.deleter_stop_timeout_s));
	if (opt.drain)
		stop_requested = 1;
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
