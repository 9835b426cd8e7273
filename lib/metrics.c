/* metrics.c — the metric table, per-process deltas and Prometheus rendering. See metrics.h. */
#define _GNU_SOURCE
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

enum metric_type { COUNTER, GAUGE, HISTOGRAM };

struct metric_def {
	const char *name;
	enum metric_type type;
	const char *help;
	const double *buckets; /* histograms: upper bounds, ascending, ending with INFINITY */
};

static const double lag_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, INFINITY };
static const double duration_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
					   1, 2.5, 5, 10, INFINITY };

static const struct metric_def defs[] = {
	{ "otp_sent_total", COUNTER, "OTPs sent (Telegram confirmed the message)", NULL },
	{ "otp_sent_by_key_total", COUNTER,
	  "OTPs sent, by the API key that asked: its name, or # and a digest prefix for an unnamed key",
	  NULL },
	{ "otp_failed_total", COUNTER, "OTP requests that did not end in a sent message, by reason",
	  NULL },
	{ "rate_limit_exceeded_total", COUNTER, "Requests refused by a rate limit (429)", NULL },
	{ "otp_deleted_total", COUNTER, "Messages deleted (or found already gone)", NULL },
	{ "otp_delete_failed_total", COUNTER,
	  "Messages that can never be deleted (too old, chat gone, bot blocked)", NULL },
	{ "otp_delete_retried_total", COUNTER, "Deletion attempts that failed and were rescheduled",
	  NULL },
	{ "otp_revoked_total", COUNTER,
	  "POST /revoke-otp: messages deleted at once (result=deleted) or handed to otp-deleter "
	  "(result=scheduled)", NULL },
	{ "otp_pending_deletions", GAUGE, "Messages waiting for their deletion", NULL },
	{ "telegram_pause_seconds", GAUGE,
	  "Seconds left of Telegram's flood-control pause, by kind of call (send, delete)", NULL },
	{ "otp_delete_lag_seconds", HISTOGRAM,
	  "Confirmed deletion time minus the promised delete_at", lag_buckets },
	{ "http_requests_total", COUNTER, "HTTP requests answered, by path and status", NULL },
	{ "otp_send_duration_seconds", HISTOGRAM, "Time to answer POST /send-otp",
	  duration_buckets },
	{ "telegram_api_duration_seconds", HISTOGRAM, "Bot API call duration, by method",
	  duration_buckets },
	{ "otp_database_reopened_total", COUNTER,
	  "Times a process found the database file removed or replaced and reopened it", NULL },
	{ "otp_store_primary_changes_total", COUNTER,
	  "Times a process found that Redis Sentinel named another primary", NULL },
	{ "otp_deleter_up", GAUGE,
	  "1 while otp-deleter's heartbeat is fresh (POST /send-otp sends only then), else 0", NULL },
	{ "otp_pending_overdue_seconds", GAUGE,
	  "How long the earliest pending deletion has been due (0: none is due)", NULL },
	{ "otp_store_up", GAUGE,
	  "1 when the store (SQLite or Redis) could be read for this answer; 0 answers alone", NULL },
};

#define NDEFS (sizeof defs / sizeof defs[0])
#define MAX_SERIES 1024
#define NAME_MAX_LEN 64
#define LABELS_MAX_LEN 160

struct delta {
	char name[NAME_MAX_LEN];
	char labels[LABELS_MAX_LEN];
	double value;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct delta deltas[MAX_SERIES];
static int ndeltas;

static const struct metric_def *find_def(const char *name)
{
	size_t i;

	for (i = 0; i < NDEFS; i++)
		if (strcmp(defs[i].name, name) == 0)
			return &defs[i];
	return NULL;
}

/* Adds to one series; the caller holds the lock. A full table drops the sample: metrics must
 * never stop a request. */
static void add_locked(const char *name, const char *labels, double v)
{
	int i;

	for (i = 0; i < ndeltas; i++) {
		if (strcmp(deltas[i].name, name) == 0 && strcmp(deltas[i].labels, labels) == 0) {
			deltas[i].value += v;
			return;
		}
	}
	if (ndeltas == MAX_SERIES)
		return;
	snprintf(deltas[ndeltas].name, NAME_MAX_LEN, "%s", name);
	snprintf(deltas[ndeltas].labels, LABELS_MAX_LEN, "%s", labels);
	deltas[ndeltas].value = v;
	ndeltas++;
}

void metrics_count(const char *name, const char *labels, double delta)
{
	pthread_mutex_lock(&lock);
	add_locked(name, labels, delta);
	pthread_mutex_unlock(&lock);
}

static void format_le(double le, char *buf, size_t cap)
{
	if (isinf(le))
		snprintf(buf, cap, "+Inf");
	else
		snprintf(buf, cap, "%g", le);
}

void metrics_observe(const char *name, const char *labels, double value)
{
	const struct metric_def *d = find_def(name);
	char series[NAME_MAX_LEN], lbl[LABELS_MAX_LEN], le[32];
	int i;

	if (d == NULL || d->type != HISTOGRAM)
		return;
	pthread_mutex_lock(&lock);
	snprintf(series, sizeof series, "%s_bucket", name);
	for (i = 0;; i++) {
		format_le(d->buckets[i], le, sizeof le);
		snprintf(lbl, sizeof lbl, "%s%sle=\"%s\"", labels, labels[0] ? "," : "", le);
		add_locked(series, lbl, value <= d->buckets[i] ? 1 : 0);
		if (isinf(d->buckets[i]))
			break;
	}
	snprintf(series, sizeof series, "%s_sum", name);
	add_locked(series, labels, value);
	snprintf(series, sizeof series, "%s_count", name);
	add_locked(series, labels, 1);
	pthread_mutex_unlock(&lock);
}

void metrics_reset(void)
{
	pthread_mutex_lock(&lock);
	ndeltas = 0;
	pthread_mutex_unlock(&lock);
}

void metrics_observe_bot_call(const struct tg_result *res)
{
	char labels[64];

	snprintf(labels, sizeof labels, "method=\"%s\"", tg_method_name(res->method));
	metrics_observe("telegram_api_duration_seconds", labels, res->duration_s);
}

int metrics_flush(struct store *s)
{
	struct delta *batch = malloc(MAX_SERIES * sizeof *batch);
	struct store_metric *rows = malloc(MAX_SERIES * sizeof *rows);
	long reopened, changes;
	int i, n = 0, added = 0, rc = -1;

	if (batch == NULL || rows == NULL)
		goto out; /* the deltas stay for the next flush */
	/* take the deltas and write them without the lock: requests keep counting meanwhile */
	pthread_mutex_lock(&lock);
	reopened = store_reopens_take();
	if (reopened > 0)
		add_locked("otp_database_reopened_total", "", (double)reopened);
	changes = store_primary_changes_take();
	if (changes > 0)
		add_locked("otp_store_primary_changes_total", "", (double)changes);
	n = ndeltas;
	memcpy(batch, deltas, (size_t)n * sizeof *batch);
	ndeltas = 0;
	pthread_mutex_unlock(&lock);
	for (i = 0; i < n; i++) {
		rows[i].name = batch[i].name;
		rows[i].labels = batch[i].labels;
		rows[i].value = batch[i].value;
	}
	if (n == 0 || store_metrics_add(s, rows, n, &added) == 0) {
		rc = 0;
		goto out;
	}
	pthread_mutex_lock(&lock); /* keep what was not added for the next flush */
	for (i = added; i < n; i++)
		add_locked(batch[i].name, batch[i].labels, batch[i].value);
	pthread_mutex_unlock(&lock);
out:
	free(rows);
	free(batch);
	return rc;
}

/* ---- rendering ---- */

/* The labels of a series without its le="…" pair, and that le as a number. */
static void split_le(const char *labels, char *base, size_t cap, double *le)
{
	const char *p = strstr(labels, "le=\"");
	size_t n;

	*le = 0;
	if (p == NULL) {
		snprintf(base, cap, "%s", labels);
		return;
	}
	*le = strncmp(p + 4, "+Inf", 4) == 0 ? INFINITY : strtod(p + 4, NULL);
	n = (size_t)(p - labels);
	if (n > 0 && labels[n - 1] == ',')
		n--;
	snprintf(base, cap, "%.*s", (int)n, labels);
}

static int suffix_rank(const char *name)
{
	size_t n = strlen(name);

	if (n > 7 && strcmp(name + n - 7, "_bucket") == 0)
		return 0;
	if (n > 4 && strcmp(name + n - 4, "_sum") == 0)
		return 1;
	return 2;
}

static int series_order(const void *a, const void *b)
{
	const struct metric_row *x = a, *y = b;
	char bx[LABELS_MAX_LEN], by[LABELS_MAX_LEN];
	double lx, ly;
	int c;

	split_le(x->labels, bx, sizeof bx, &lx);
	split_le(y->labels, by, sizeof by, &ly);
	if ((c = strcmp(bx, by)) != 0)
		return c;
	if ((c = suffix_rank(x->name) - suffix_rank(y->name)) != 0)
		return c;
	return lx < ly ? -1 : lx > ly;
}

static int belongs(const struct metric_def *d, const char *series)
{
	size_t n = strlen(d->name);

	if (strncmp(series, d->name, n) != 0)
		return 0;
	if (d->type != HISTOGRAM)
		return series[n] == '\0';
	return strcmp(series + n, "_bucket") == 0 || strcmp(series + n, "_sum") == 0 ||
	       strcmp(series + n, "_count") == 0;
}

static void print_series(FILE *f, const struct metric_row *r)
{
	if (r->labels[0] != '\0')
		fprintf(f, "%s{%s} %.15g\n", r->name, r->labels, r->value);
	else
		fprintf(f, "%s %.15g\n", r->name, r->value);
}

/* Renders the table in its order. only: the metrics that have a row, nothing else (a counter
 * left out is better than one that reads 0 and looks reset). */
static char *render(const struct metric_row *rows, size_t nrows, const struct metric_row *gauges,
		    size_t ngauges, int only)
{
	struct metric_row *mine = malloc((nrows + ngauges + 1) * sizeof *mine);
	char *out = NULL;
	size_t outlen = 0, i, j, n;
	FILE *f;

	if (mine == NULL)
		return NULL;
	f = open_memstream(&out, &outlen);
	if (f == NULL) {
		free(mine);
		return NULL;
	}
	for (i = 0; i < NDEFS; i++) {
		const struct metric_def *d = &defs[i];

		n = 0;
		for (j = 0; j < nrows; j++)
			if (belongs(d, rows[j].name))
				mine[n++] = rows[j];
		for (j = 0; j < ngauges; j++)
			if (belongs(d, gauges[j].name))
				mine[n++] = gauges[j];
		if (only && n == 0)
			continue;
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
			d->type == COUNTER ? "counter" : d->type == GAUGE ? "gauge" : "histogram");
		qsort(mine, n, sizeof *mine, series_order);
		for (j = 0; j < n; j++)
			print_series(f, &mine[j]);
		if (n == 0 && d->type != HISTOGRAM) /* a counter nobody touched yet is 0 */
			fprintf(f, "%s 0\n", d->name);
	}
	fclose(f);
	free(mine);
	return out;
}

char *metrics_render(const struct metric_row *rows, size_t nrows, const struct metric_row *gauges,
		     size_t ngauges)
{
	return render(rows, nrows, gauges, ngauges, 0);
}

char *metrics_render_gauges(const struct metric_row *gauges, size_t ngauges)
{
	return render(NULL, 0, gauges, ngauges, 1);
}
