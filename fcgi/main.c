/* main.c — otp-fcgi: the FastCGI responder. Wires settings, logging and OTP_FCGI_THREADS worker
 * threads; each thread accepts on the listening socket it was handed (fd 0, as lighttpd's
 * bin-path and spawn-fcgi pass it) and answers through the router.
 *
 * Signals are blocked in every thread and taken by the main thread with sigwait(): on SIGTERM or
 * SIGINT it waits (bounded) for requests in flight, then exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "apikeys.h"
#include "app.h"
#include "cfg.h"
#include "clock.h"
#include "fcgi_io.h"
#include "log.h"
#include "metrics.h"
#include "recorder.h"
#include "router.h"
#include "secmem.h"
#include "store.h"
#include "store_pool.h"
#include "tg.h"

#define METRICS_FLUSH_MS 250
/* A worker's deepest stack is jansson parsing a body nested to its limit of 2048 levels: under
 * 192 KiB (measured); a request otherwise touches about 24 KiB. The default 8 MiB is address
 * space reserved 256 times over with paid broadcast. */
#define WORKER_STACK_BYTES (512 * 1024)
/* glibc gives up to 8 malloc arenas per core, each keeping its own free memory: with hundreds
 * of threads mostly waiting on the network, a few shared arenas hold far less. */
#define MALLOC_ARENAS 2
/* The most stores a process opens: SQLite's writes queue on one lock, so more connections
 * would only hold memory while they wait for it. */
#define STORE_POOL_MAX 16

static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int in_flight;
static atomic_long served; /* requests answered, for metrics_flusher's malloc_trim */

/* One log line and the request metrics for every request. */
static void account(const struct request *req, const struct response *resp, int64_t start_ms)
{
	int64_t took_ms = clock_mono_ms() - start_ms;
	const char *path = router_metric_path(req->path);
	char labels[96], method[16], shown[256];
	json_t *f;

	/* the client chose these bytes: keep the line valid JSON and short */
	log_printable(req->method, method, sizeof method);
	log_printable(req->path, shown, sizeof shown);
	f = json_pack("{s:s, s:s, s:i, s:f}", "method", method, "path", shown, "status",
		      resp->status, "duration_ms", (double)took_ms);

	snprintf(labels, sizeof labels, "path=\"%s\",status=\"%d\"", path, resp->status);
	metrics_count("http_requests_total", labels, 1);
	if (strcmp(path, "/send-otp") == 0)
		metrics_observe("otp_send_duration_seconds", "", (double)took_ms / 1000.0);

	if (resp->chat_id_masked[0] != '\0')
		json_object_set_new(f, "chat_id", json_string(resp->chat_id_masked));
	log_json(resp->status >= 500 ? LOG_WARNING : LOG_INFO, "request", f);
}

static void serve(struct worker *w, FCGX_Request *fr, struct request_buf *buf)
{
	struct fcgi_io_conn conn = { fr, buf };
	struct request req;
	struct response resp;
	int64_t start = clock_mono_ms();

	memset(&resp, 0, sizeof resp);
	fcgi_io_read_request(&conn, &req);
	router_dispatch(w, &req, &resp);
	fcgi_io_wipe_input(fr); /* libfcgi's copy of the body */
	worker_store_give(w); /* a handler may return holding one: no idle thread keeps a store */
	if (resp.status == 0)
		http_respond_detail(&resp, 500, "Internal Server Error");
	fcgi_io_write_response(fr, &resp);
	account(&req, &resp, start);
	http_response_clear(&resp);
	secmem_wipe(buf->body, req.body_len); /* the body held the OTP */
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct request_buf *buf = malloc(sizeof *buf);
	FCGX_Request fr;
	int rc;

	if (buf == NULL || FCGX_InitRequest(&fr, 0, 0) != 0) {
		log_msg(LOG_ERROR, "worker start failed: out of memory");
		free(buf);
		return NULL;
	}
	for (;;) {
		pthread_mutex_lock(&accept_lock);
		rc = FCGX_Accept_r(&fr);
		pthread_mutex_unlock(&accept_lock);
		if (rc < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			       errno == ENOMEM || errno == EINTR)) {
			clock_sleep_ms(100); /* out of descriptors or memory for now: try again */
			continue;
		}
		if (rc < 0) {
			/* the listening socket is gone: a process without workers must not linger,
			 * or the web server keeps routing requests to it */
			log_msg(LOG_ERROR, "accepting FastCGI connections failed (%d): exiting", rc);
			kill(getpid(), SIGTERM);
			break;
		}
		atomic_fetch_add(&in_flight, 1);
		serve(w, &fr, buf);
		fcgi_io_finish(&fr);
		atomic_fetch_sub(&in_flight, 1);
		atomic_fetch_add(&served, 1);
	}
	FCGX_Free(&fr, 0);
	free(buf);
	return NULL;
}

/* Moves this process's metric counts into the store every METRICS_FLUSH_MS, so that /metrics
 * answered by any process shows them, and checks that the database file is still the one at
 * its path (an idle process notices a removed file within a second, and logs it once). When
 * the process has gone idle after requests, gives their freed heap back: glibc keeps it, and
 * RSS wandered by up to 0.8 MiB (5 %) from one quiet moment to the next (make soak). Runs for
 * the life of the process. */
static void *metrics_flusher(void *arg)
{
	const struct cfg *cfg = arg;
	struct store *s = NULL;
	struct store_config sc;
	long trimmed = 0, n;
	char err[256];

	cfg_store_config(cfg, &sc);
	for (;;) {
		clock_sleep_ms(METRICS_FLUSH_MS);
		n = atomic_load(&served);
		if (n != trimmed && atomic_load(&in_flight) == 0) {
			malloc_trim(0);
			trimmed = n;
		}
		if (s == NULL && (s = store_open_config(&sc, err, sizeof err)) == NULL) {
			log_msg(LOG_ERROR, "metrics: opening the database: %s", err);
			continue;
		}
		if (store_check_file(s) < 0)
			log_msg(LOG_ERROR, "reopening the database: %s", store_strerror(s));
		else if (metrics_flush(s) != 0)
			log_msg(LOG_WARNING, "metrics: flushing: %s", store_strerror(s));
	}
	return NULL;
}

static int check_database(const struct cfg *cfg)
{
	struct store_config sc;
	struct store *s;
	char err[256];

	cfg_store_config(cfg, &sc);
	s = store_open_config(&sc, err, sizeof err);

	if (s == NULL) {
		log_msg(LOG_ERROR, "opening the database: %s", err);
		return -1;
	}
	if (store_is_on_tmpfs(s) == 0)
		log_msg(LOG_WARNING, "the database %s is not on tmpfs: its rows reach the disk",
			cfg->db_path);
	store_close(s);
	return 0;
}

/* Each worker thread holds about four descriptors (its Bot API connection, the wake-up pair of
 * its curl handle, its FastCGI connection); the stores, shared (at most STORE_POOL_MAX), two
 * each (SQLite's database and -wal). 256 threads (paid broadcast) reach the usual soft limit of
 * 1024 (about 1,000 were open per process at 1,000 sends/s), so take the hard one. */
static void raise_open_files_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_msg(LOG_WARNING, "cannot raise the open-file limit: %s", strerror(errno));
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: otp-fcgi [--check-config | --version | --help]\n"
		   "A FastCGI responder: started by a web server (lighttpd bin-path) or spawn-fcgi,\n"
		   "it accepts on file descriptor 0. Settings come from the environment; see\n"
		   "otp-fcgi(8) and docs/settings.md.\n");
}

/* Waits for SIGTERM/SIGINT (SIGHUP reads the API keys file again), or for
 * the listening socket's path to vanish (checked every second): a signal can be lost, e.g. one
 * lighttpd sends between its fork and our exec, and lighttpd removes its sockets as it exits
 * without waiting for us. Then waits for requests in flight: as long as the longest request can
 * take, so that a message Telegram delivered is always recorded for deletion (or, when the
 * record fails, deleted again at once: a second Bot API call) before the process exits. */
static void wait_for_stop(struct app *app)
{
	const struct cfg *cfg = app->cfg;
	int64_t grace = cfg->send_wait_ms + 2 * cfg->telegram_timeout_ms +
			2 * STORE_BUSY_TIMEOUT_MS + 1000;
	struct timespec second = { 1, 0 };
	sigset_t set;
	int sig;
	int64_t deadline;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		sig = sigtimedwait(&set, NULL, &second);
		if (sig == SIGTERM || sig == SIGINT) {
			log_msg(LOG_INFO, "stopping on signal %d", sig);
			break;
		}
		if (sig == SIGHUP) {
			apikeys_reload(app->keys);
			continue;
		}
		if (sig < 0 && errno != EAGAIN && errno != EINTR) {
			log_msg(LOG_ERROR, "waiting for signals: %s: stopping", strerror(errno));
			break;
		}
		if (fcgi_io_listener_gone()) {
			log_msg(LOG_INFO, "the listening socket's path is gone (the web server "
					  "stopped): stopping");
			break;
		}
	}
	atomic_store(&app->stopping, 1);
	deadline = clock_mono_ms() + grace;
	while (atomic_load(&in_flight) > 0 && clock_mono_ms() < deadline)
		clock_sleep_ms(10);
}

int main(int argc, char **argv)
{
	struct cfg cfg;
	struct app app = { 0 };
	struct store_config sc;
	struct worker *workers = NULL;
	pthread_t tid;
	pthread_attr_t attr;
	sigset_t set;
	char err[512];
	int i, rc = 1;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("otp-fcgi %s\n", SERVICE_VERSION);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--check-config") != 0) {
		usage(stderr);
		return 2;
	}
	/* block the stop signals before anything else: lighttpd may signal a child that is still
	 * starting, and a SIGTERM caught then (libfcgi installs a handler of its own) would be
	 * lost to sigwait(), leaving a process that never stops. Blocked, it waits for sigwait().
	 * The mask is inherited by every thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	mallopt(M_ARENA_MAX, MALLOC_ARENAS);
	secmem_install_json_allocator();
	log_init(POLICY_FCGI_NAME, LOG_INFO);
	/* first: the API keys are hashed with OpenSSL, whose allocator tg replaces */
	if (tg_global_init() != 0) {
		log_msg(LOG_ERROR, "library initialisation failed");
		return 1;
	}
	switch (secmem_forbid_core_dumps(err, sizeof err)) {
	case -1:
		log_msg(LOG_ERROR, "turning core dumps off: %s", err);
		return 1;
	case 1:
		log_msg(LOG_WARNING, "core dumps allowed (OTP_ALLOW_CORE_DUMPS=1): a core holds the "
				     "bot token and recent OTPs");
		break;
	}
	if (cfg_load(&cfg, err, sizeof err) != 0) {
		log_msg(LOG_ERROR, "configuration: %s", err);
		return 1;
	}
	log_init(POLICY_FCGI_NAME, cfg.log_level);
	app.keys = apikeys_new(&(struct apikeys_config){ cfg.api_key, cfg.api_keys, cfg.api_keys_file },
			       err, sizeof err);
	if (app.keys == NULL) {
		log_msg(LOG_ERROR, "configuration: %s", err);
		goto out;
	}
	cfg_log_warnings(&cfg);
	/* the web server listens where HOST says (the shipped configs read it): beyond loopback,
	 * without a key, anyone who reaches it sends codes through this bot */
	if (!cfg_host_is_loopback(cfg.host) && !apikeys_enabled(app.keys))
		log_msg(LOG_WARNING, "HOST=%s is reachable beyond this machine and no API key is "
				     "set: anyone who reaches it can send and revoke codes; set "
				     "API_KEY (or OTP_API_KEYS, OTP_API_KEYS_FILE), or listen on "
				     "127.0.0.1", cfg.host);
	if (argc > 1) { /* --check-config */
		printf("configuration ok: database %s, %s mode, %d threads\n", cfg.store_url,
		       cfg.sandbox ? "sandbox" : "live", cfg.fcgi_threads);
		rc = 0;
		goto out;
	}
	if (FCGX_IsCGI()) {
		fprintf(stderr, "otp-fcgi: standard input is not a FastCGI socket; start it from a "
				"web server or spawn-fcgi (see --help)\n");
		rc = 2;
		goto out;
	}
	if (FCGX_Init() != 0) {
		log_msg(LOG_ERROR, "library initialisation failed");
		goto out;
	}
	if (check_database(&cfg) != 0)
		goto out;

	signal(SIGPIPE, SIG_IGN);
	raise_open_files_limit();

	app.cfg = &cfg;
	policy_from_cfg(&app.policy, &cfg);
	cfg_store_config(&cfg, &sc);
	app.stores = store_pool_new(&sc, STORE_POOL_MAX);
	app.recorder = app.stores != NULL ? recorder_new(app.stores) : NULL;
	atomic_init(&app.stopping, 0);
	workers = calloc((size_t)cfg.fcgi_threads, sizeof *workers);
	if (app.stores == NULL || app.recorder == NULL || workers == NULL || pthread_attr_init(&attr) != 0)
		goto out;
	pthread_attr_setstacksize(&attr, WORKER_STACK_BYTES);
	for (i = 0; i < cfg.fcgi_threads; i++) {
		workers[i].app = &app;
		workers[i].tg = tg_new(cfg.api_base, cfg.bot_token, cfg.telegram_timeout_ms);
		if (workers[i].tg != NULL)
			tg_set_paid_broadcast(workers[i].tg, cfg.paid_broadcast);
		if (workers[i].tg != NULL && cfg.ca_file != NULL &&
		    tg_set_ca_file(workers[i].tg, cfg.ca_file) != 0) {
			tg_free(workers[i].tg);
			workers[i].tg = NULL;
		}
		if (workers[i].tg == NULL || pthread_create(&tid, &attr, worker_main, &workers[i]) != 0) {
			log_msg(LOG_ERROR, "starting worker thread %d failed", i);
			if (i == 0)
				goto out;
			_exit(1); /* running threads use cfg and workers: free nothing under them */
		}
		pthread_detach(tid);
	}
	if (pthread_create(&tid, NULL, metrics_flusher, &cfg) != 0) {
		log_msg(LOG_ERROR, "starting the metrics thread failed");
		_exit(1);
	}
	pthread_detach(tid);
	log_json(LOG_INFO, "otp-fcgi started",
		 json_pack("{s:i, s:s, s:s, s:i}", "threads", cfg.fcgi_threads, "mode",
			   cfg.sandbox ? "sandbox" : "live", "database", cfg.store_url, "api_keys",
			   apikeys_count(app.keys)));
	wait_for_stop(&app);
	rc = 0;
	/* workers may still sit in accept or in a request past the grace period: exit without
	 * tearing down what they use */
	_exit(rc);
out:
	recorder_free(app.recorder);
	store_pool_free(app.stores);
	apikeys_free(app.keys);
	cfg_free(&cfg);
	free(workers);
	return rc;
}
