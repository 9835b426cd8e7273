/* reap.c — deleting due messages concurrently. See reap.h. */
#include "reap.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "store.h"


/* One Bot API call's rows: they share a chat. The tag of the call. */
struct group {
	int n;
	struct pending rows[];
};

static int queue_group(struct reaper *r, const struct pending *rows, int n);

static int tg_add_delete(void *batch, const char *chat_id, const long long *ids, int n, void *tag)
{
	return tg_batch_add_delete(batch, chat_id, ids, n, tag);
}

static int tg_step(void *batch, int stop, int wait_ms)
{
	return tg_batch_step(batch, stop, wait_ms);
}

static int tg_next_done(void *batch, struct tg_done *out)
{
	return tg_batch_next_done(batch, out);
}

static void tg_halt(void *batch)
{
	tg_batch_halt(batch);
}

const struct reap_batch_ops reap_tg_batch_ops = { tg_add_delete, tg_step, tg_next_done, tg_halt };

void reap_init(struct reaper *r, struct store *s, const struct policy *policy, void *batch,
	       const struct reap_batch_ops *ops, const volatile sig_atomic_t *stop, unsigned int seed)
{
	memset(r, 0, sizeof *r);
	r->store = s;
	r->policy = policy;
	r->batch = batch;
	r->ops = ops;
	r->stop = stop;
	r->seed = seed;
}

void reap_free(struct reaper *r)
{
	free(r->inflight);
	free(r->confirmed);
	r->inflight = r->confirmed = NULL;
	r->ninflight = r->nconfirmed = r->inflight_cap = r->confirmed_cap = 0;
}

int reap_busy(const struct reaper *r)
{
	return r->busy;
}

/* Appends v to the array *a of *n elements (capacity *cap). Returns 0 or -1. */
static int push_id(int64_t **a, int *n, int *cap, int64_t v)
{
	if (*n == *cap) {
		int c = *cap > 0 ? *cap * 2 : 64;
		int64_t *p = realloc(*a, (size_t)c * sizeof *p);

		if (p == NULL)
			return -1;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return 0;
}

static int has_id(const int64_t *a, int n, int64_t v)
{
	int i;

	for (i = 0; i < n; i++)
		if (a[i] == v)
			return 1;
	return 0;
}

int64_t reap_backoff_ms(int attempts, unsigned int *seed)
{
	int64_t base = 1000;
	int i;

	for (i = 1; i < attempts && base < 60000; i++)
		base *= 2;
	if (base > 60000)
		base = 60000;
	/* ±20 % so that rows that failed together do not retry in lockstep */
	return base * 8 / 10 + (int64_t)(rand_r(seed) % (int)(base * 4 / 10 + 1));
}

static void log_row(enum log_level level, const char *message, const struct pending *p,
		    const struct tg_result *res, int64_t now_ms)
{
	char masked[LOG_MASKED_LEN];
	json_t *f;

	log_mask_chat_id(p->chat_id, masked);
	f = json_pack("{s:s, s:I, s:f, s:i}", "chat_id", masked, "message_id",
		      (json_int_t)p->message_id, "lag_seconds",
		      (double)(now_ms - p->delete_at_ms) / 1000.0, "attempts", p->attempts + 1);
	if (res->status != TG_OK) {
		json_object_set_new(f, "result", json_string(tg_status_name(res->status)));
		json_object_set_new(f, "telegram_error_code", json_integer(res->error_code));
		json_object_set_new(f, "error", json_string(res->description));
	}
	log_json(level, message, f);
}

static void forget_inflight(struct reaper *r, int64_t id)
{
	int i;

	for (i = 0; i < r->ninflight; i++) {
		if (r->inflight[i] == id) {
			r->inflight[i] = r->inflight[--r->ninflight];
			return;
		}
	}
}

/* Removes the rows of confirmed deletions; the ids of those it could not remove are kept, so
 * that the next pass removes them without asking Telegram again. */
static void remove_confirmed(struct reaper *r, const int64_t *ids, int n)
{
	int i;

	if (n == 0 || store_pending_remove_many(r->store, ids, n) == 0)
		return;
	r->failed = 1;
	for (i = 0; i < n; i++)
		if (push_id(&r->confirmed, &r->nconfirmed, &r->confirmed_cap, ids[i]) != 0)
			break; /* out of memory: the row is asked about again, answered "not found" */
}

/* Applies one call's result to each row it covered: removes the rows that are done (deleted,
 * already gone, or never deletable), reschedules the others. Returns 1 when Telegram asked us
 * to wait with deletions (start no further call), else 0. */
static int settle(struct reaper *r, const struct tg_done *d)
{
	struct group *g = d->tag;
	const struct tg_result *res = &d->res;
	enum policy_deletion outcome;
	int64_t now = clock_now_ms(), next, until = 0, done_ids[TG_DELETE_MESSAGES_MAX];
	int i, ndone = 0;

	if (!d->started) { /* never started (a 429 or SIGTERM stopped the batch): still due */
		for (i = 0; i < g->n; i++)
			forget_inflight(r, g->rows[i].id);
		free(g);
		return 0;
	}
	metrics_observe_bot_call(res);
	outcome = policy_deletion_outcome(res);
	if (outcome == POLICY_DELETION_GIVE_UP && g->n > 1) {
		/* one refusal of deleteMessages may be about one of its messages: before giving
		 * any of them up, ask about each alone */
		for (i = 0; i < g->n; i++) {
			forget_inflight(r, g->rows[i].id);
			if (queue_group(r, &g->rows[i], 1) != 0)
				r->failed = 1;
		}
		r->requeued = 1;
		free(g);
		return 0;
	}
	for (i = 0; i < g->n; i++) {
		const struct pending *p = &g->rows[i];

		forget_inflight(r, p->id);
		switch (outcome) {
		case POLICY_DELETION_DONE:
			log_row(LOG_INFO, res->status == TG_OK ? "message deleted"
							       : "message already gone",
				p, res, now);
			r->stats.deleted++;
			if (now < p->delete_at_ms)
				r->stats.deleted_early++;
			metrics_count("otp_deleted_total", "", 1);
			metrics_observe("otp_delete_lag_seconds", "",
					(double)(now - p->delete_at_ms) / 1000.0);
			done_ids[ndone++] = p->id;
			break;
		case POLICY_DELETION_GIVE_UP:
			log_row(LOG_ERROR, "message cannot be deleted: row removed", p, res, now);
			r->stats.failed_permanently++;
			metrics_count("otp_delete_failed_total", "", 1);
			done_ids[ndone++] = p->id;
			break;
		case POLICY_DELETION_RETRY:
			log_row(LOG_WARNING, "deletion failed: will retry", p, res, now);
			r->stats.retried++;
			metrics_count("otp_delete_retried_total", "", 1);
			/* after a 429 the row stays due: the pause on deletions (in the
			 * store, where clearing it ends it) decides when it goes */
			next = res->status == TG_RETRY_AFTER
				       ? now
				       : now + reap_backoff_ms(p->attempts + 1, &r->seed);
			/* the store never moves a try before delete_at */
			if (next < p->delete_at_ms)
				next = p->delete_at_ms;
			if (next > r->last_retry_ms)
				r->last_retry_ms = next;
			if (store_pending_retry(r->store, p->id, next) != 0)
				r->failed = 1;
			break;
		}
	}
	free(g);
	remove_confirmed(r, done_ids, ndone);
	if (policy_after_deletion(r->policy, r->store, res, now, POLICY_DELETER_NAME, &until) != 0)
		r->failed = 1;
	if (res->status == TG_RETRY_AFTER) {
		if (until > r->pause_until_ms)
			r->pause_until_ms = until;
		return 1; /* Telegram asked us to wait with deletions: start none */
	}
	return 0;
}

static int by_chat(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	int c = strcmp(x->chat_id, y->chat_id);

	if (c != 0)
		return c;
	return x->next_try_ms < y->next_try_ms ? -1 : x->next_try_ms > y->next_try_ms;
}

/* Queues one call for rows[0..n) (one chat). Returns 0 or -1. */
static int queue_group(struct reaper *r, const struct pending *rows, int n)
{
	struct group *g = malloc(sizeof *g + (size_t)n * sizeof g->rows[0]);
	long long ids[TG_DELETE_MESSAGES_MAX] = { 0 };
	int i;

	if (g == NULL)
		return -1;
	g->n = n;
	memcpy(g->rows, rows, (size_t)n * sizeof *rows);
	for (i = 0; i < n; i++)
		ids[i] = rows[i].message_id;
	if (r->ops->add_delete(r->batch, rows[0].chat_id, ids, n, g) != 0) {
		free(g);
		return -1;
	}
	for (i = 0; i < n; i++) /* room was made by queue_due() */
		r->inflight[r->ninflight++] = rows[i].id;
	return 0;
}

/* Reads the rows due at now that no call covers yet (and that are not confirmed deletions
 * waiting for their removal) and queues their calls, at most max rows, grouped by chat
 * (TG_DELETE_MESSAGES_MAX per call). Returns the number queued, or -1 (logged). */
static int queue_due(struct reaper *r, int64_t now, int max)
{
	struct pending *rows = NULL;
	int want = max + r->ninflight + r->nconfirmed, n, i, fresh = 0, first, rc = -1;

	r->last_fetch_ms = clock_mono_ms();
	rows = malloc((size_t)want * sizeof *rows);
	if (rows == NULL)
		goto out;
	n = store_pending_due(r->store, now, rows, want);
	if (n < 0) {
		log_msg(LOG_ERROR, "reading due deletions: %s", store_strerror(r->store));
		goto out;
	}
	/* every fresh row read is queued, even past max: a store shared by several deleters
	 * (Redis) leased them to us, and a row left out would wait for its lease to end */
	for (i = 0; i < n; i++)
		if (!has_id(r->inflight, r->ninflight, rows[i].id) &&
		    !has_id(r->confirmed, r->nconfirmed, rows[i].id))
			rows[fresh++] = rows[i];
	/* room for every row a call may cover, splits included, so queue_group cannot fail
	 * for want of it */
	if (r->ninflight + fresh > r->inflight_cap) {
		int cap = (r->ninflight + fresh) * 2;
		int64_t *v = realloc(r->inflight, (size_t)cap * sizeof *v);

		if (v == NULL)
			goto out;
		r->inflight = v;
		r->inflight_cap = cap;
	}
	qsort(rows, (size_t)fresh, sizeof *rows, by_chat);
	for (first = 0, i = 1; i <= fresh; i++) {
		if (i < fresh && strcmp(rows[i].chat_id, rows[first].chat_id) == 0 &&
		    i - first < TG_DELETE_MESSAGES_MAX)
			continue;
		if (queue_group(r, &rows[first], i - first) != 0) {
			log_msg(LOG_ERROR, "reap: cannot queue a deletion (out of memory)");
			r->fetched += first;
			goto out;
		}
		first = i;
	}
	r->fetched += fresh;
	rc = fresh;
out:
	free(rows);
	return rc;
}

/* Telegram's pause on deletions as the store holds it now: one another process recorded
 * holds us too, and a row cleared or shortened ends ours (no copy outlives it). On a read
 * failure the last one read stays. */
static void read_pause(struct reaper *r)
{
	int64_t until = 0;

	if (policy_paused_until(r->policy, r->store, POLICY_PAUSE_DELETE, clock_now_ms(),
				&until) == 0)
		r->pause_until_ms = until;
}

int reap_pass(struct reaper *r, int64_t now_ms, int max)
{
	int n;

	if (r->busy)
		return r->ninflight;
	if (r->nconfirmed > 0) {
		if (store_pending_remove_many(r->store, r->confirmed, r->nconfirmed) != 0) {
			log_msg(LOG_ERROR, "removing the rows of confirmed deletions: %s",
				store_strerror(r->store));
			return -1;
		}
		r->nconfirmed = 0;
	}
	read_pause(r);
	if (now_ms < r->pause_until_ms)
		return 0;
	if (max > REAP_BATCH_MAX)
		max = REAP_BATCH_MAX;
	r->fetched = 0;
	r->failed = 0;
	n = queue_due(r, now_ms, max);
	if (n < 0 && r->ninflight == 0)
		return -1;
	if (n < 0)
		r->failed = 1; /* some calls were queued: run them, then back off */
	r->busy = r->ninflight > 0;
	return r->ninflight;
}

int reap_step(struct reaper *r, int wait_ms)
{
	int64_t now = clock_now_ms();
	struct tg_done d;
	int more;

	if (!r->busy)
		return 0;
	/* after a failed row update, fetch nothing more: the rows concerned are due again and
	 * would be sent again at once; the caller backs off instead */
	/* nor while REAP_BATCH_MAX rows wait for calls: a backlog (a long pause ended) is taken
	 * in bounded bites, so a fetch stays cheap and no queued row outlives a shared store's
	 * lease (Redis) before its call starts */
	if (!*r->stop && !r->failed && now >= r->pause_until_ms &&
	    r->ninflight < REAP_BATCH_MAX &&
	    clock_mono_ms() - r->last_fetch_ms >= REAP_FETCH_EVERY_MS) {
		read_pause(r);
		if (now >= r->pause_until_ms && queue_due(r, now, REAP_BATCH_MAX) < 0)
			r->failed = 1;
	}
	more = r->ops->step(r->batch, *r->stop != 0, wait_ms);
	r->requeued = 0;
	while (r->ops->next_done(r->batch, &d) == 1)
		if (settle(r, &d) != 0)
			r->ops->halt(r->batch);
	/* calls queued while settling (a refused batch asked about message by message) start at
	 * the next step, even when this one found the batch idle */
	if (more || r->requeued)
		return 1;
	r->busy = 0;
	if (r->failed) {
		log_msg(LOG_ERROR, "updating deletion rows: %s", store_strerror(r->store));
		return -1;
	}
	return 0;
}
