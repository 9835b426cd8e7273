/* metrics.h — counters and histograms for /metrics, summed over every process.
 *
 * Each process adds to its own in-memory deltas (cheap, thread-safe) and flushes them into the
 * store (metrics_flush), where every process's deltas add up; /metrics renders the stored totals.
 * So the numbers are the whole pool's, whichever worker answers, and never go backwards. */
#ifndef OTP_METRICS_H
#define OTP_METRICS_H

#include <stddef.h>

#include "tg.h"

struct store;

/* Adds delta to a counter. labels is Prometheus label text without braces
 * ('path="/send-otp",status="200"') or "" — values must already be safe (no quotes). */
void metrics_count(const char *name, const char *labels, double delta);

/* Records one observation of a histogram declared in metrics.c's table. */
void metrics_observe(const char *name, const char *labels, double value);

/* Records a Bot API call's duration: telegram_api_duration_seconds{method}. */
void metrics_observe_bot_call(const struct tg_result *res);

/* Writes the deltas gathered so far into the store and clears them. Returns 0, or -1 (the
 * deltas are kept for the next flush) with the reason in store_strerror(). */
int metrics_flush(struct store *s);

/* Forgets unflushed deltas (tests). */
void metrics_reset(void);

/* One stored series, as the store hands them back. */
struct metric_row {
	const char *name;    /* series name: "otp_sent_total", "otp_delete_lag_seconds_bucket" */
	const char *labels;
	double value;
};

/* Renders rows (any order) plus the given gauges in the Prometheus text format (0.0.4) with
 * HELP and TYPE lines. Returns a malloc'd string, or NULL when out of memory. */
char *metrics_render(const struct metric_row *rows, size_t nrows, const struct metric_row *gauges,
		     size_t ngauges);

/* Renders only the given gauges (with their HELP and TYPE lines), no other metric: the answer
 * when the stored totals cannot be read. Returns a malloc'd string, or NULL. */
char *metrics_render_gauges(const struct metric_row *gauges, size_t ngauges);

#endif
