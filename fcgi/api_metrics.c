/* api_metrics.c — GET /metrics: Prometheus text, totals of every otp-fcgi and otp-deleter
 * process (each flushes its counts into the store; see lib/metrics.h), and the gauges alerts
 * watch: pending rows, how overdue the earliest is, Telegram's pauses, otp-deleter's heartbeat,
 * the store itself. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "clock.h"
#include "metrics.h"
#include "policy.h"
#include "store.h"

struct rows {
	struct metric_row *v;
	size_t n, cap;
	int oom;
};

/* Copies one stored series (its strings live only during the callback). */
static void collect(void *ctx, const struct store_metric *m)
{
	struct rows *r = ctx;
	struct metric_row *row;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 128;
		struct metric_row *v = realloc(r->v, cap * sizeof *v);

		if (v == NULL) {
			r->oom = 1;
			return;
		}
		r->v = v;
		r->cap = cap;
	}
	row = &r->v[r->n];
	row->name = strdup(m->name);
	row->labels = strdup(m->labels);
	row->value = m->value;
	if (row->name == NULL || row->labels == NULL) {
		free((char *)row->name);
		free((char *)row->labels);
		r->oom = 1;
		return;
	}
	r->n++;
}

#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"

/* Answers 200 with the totals and gauges; when the store cannot be read, 200 with otp_store_up 0
 * alone (a failed scrape would look like a gateway that is down, and counters read as 0 would
 * look reset); 500 only when out of memory. */
void api_metrics(struct worker *w, const struct request *req, struct response *resp)
{
	struct store *s = worker_store(w);
	struct rows rows = { NULL, 0, 0, 0 };
	struct metric_row gauges[6] = {
		{ "otp_pending_deletions", "", 0 },
		{ "telegram_pause_seconds", "kind=\"send\"", 0 },
		{ "telegram_pause_seconds", "kind=\"delete\"", 0 },
		{ "otp_pending_overdue_seconds", "", 0 },
		{ "otp_deleter_up", "", 0 },
		{ "otp_store_up", "", 1 },
	};
	int64_t now = clock_now_ms(), until[2] = { 0, 0 }, next = 0, age_ms;
	long long npending;
	int has_next, alive;
	char *text;
	size_t i;

	(void)req;
	if (s == NULL)
		goto store_down;
	/* this process's latest counts first, so a client that just sent sees itself counted */
	if (metrics_flush(s) != 0 || store_metrics_read(s, collect, &rows) != 0 ||
	    (npending = store_pending_count(s)) < 0 || (has_next = store_pending_next(s, &next)) < 0 ||
	    policy_paused_until(&w->app->policy, s, POLICY_PAUSE_SEND, now, &until[0]) != 0 ||
	    policy_paused_until(&w->app->policy, s, POLICY_PAUSE_DELETE, now, &until[1]) != 0) {
		log_msg(LOG_ERROR, "reading metrics: %s", store_strerror(s));
		goto store_down;
	}
	if (rows.oom)
		goto fail;
	/* api_deleter_alive logs its own store error; the scrape still answers */
	alive = api_deleter_alive(w, &age_ms);
	gauges[0].value = (double)npending;
	for (i = 0; i < 2; i++)
		gauges[i + 1].value = until[i] > now ? (double)(until[i] - now) / 1000.0 : 0;
	gauges[3].value = has_next && next < now ? (double)(now - next) / 1000.0 : 0;
	gauges[4].value = alive == 1;
	text = metrics_render(rows.v, rows.n, gauges, 6);
	if (text == NULL)
		goto fail;
	http_respond_text(resp, 200, PROMETHEUS_TEXT, text);
	goto out;
store_down:
	gauges[5].value = 0;
	text = metrics_render_gauges(&gauges[5], 1);
	if (text == NULL)
		goto fail;
	http_respond_text(resp, 200, PROMETHEUS_TEXT, text);
	goto out;
fail:
	http_respond_detail(resp, 500, "Metrics are unavailable");
out:
	for (i = 0; i < rows.n; i++) {
		free((char *)rows.v[i].name);
		free((char *)rows.v[i].labels);
	}
	free(rows.v);
}
