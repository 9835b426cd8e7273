/* tg_batch.c — concurrent Bot API calls over one pool of kept-alive connections (curl's multi
 * interface), driven a step at a time by the caller's loop. See tg.h. */
#define _GNU_SOURCE
#include "tg.h"

#include <stdlib.h>
#include <string.h>

#include "secmem.h"
#include "tg_exchange.h"

/* One queued or running call of a batch. */
struct xfer {
	struct xfer *next; /* in the queue */
	char *url;         /* secret: holds the token */
	char *body;
	enum tg_method method;
	void *tag;
	CURL *easy;        /* while running */
	struct tg_exchange *ex;
	char errbuf[CURL_ERROR_SIZE];
	int started;
	struct tg_result res; /* once it is over */
};

struct tg_batch {
	struct tg *tg;
	CURLM *multi;
	int steady;               /* connections kept between calls */
	int max_parallel;         /* calls at once while a backlog waits */
	struct xfer *head, *tail; /* queued, not yet started, in order */
	struct xfer *over, *over_tail; /* finished or dropped, not yet read, in order */
	int running;
	int halted;               /* start nothing more, until the batch is idle */
	CURL **idle;              /* easy handles ready for reuse */
	int nidle, nhandles;
};

struct tg_batch *tg_batch_new(struct tg *tg, int steady, int max_parallel)
{
	struct tg_batch *b = calloc(1, sizeof *b);
	int i;

	if (b == NULL)
		return NULL;
	if (max_parallel < steady)
		max_parallel = steady;
	b->tg = tg;
	b->steady = steady;
	b->max_parallel = max_parallel;
	b->multi = curl_multi_init();
	b->idle = calloc((size_t)max_parallel, sizeof *b->idle);
	if (b->multi == NULL || b->idle == NULL)
		goto fail;
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_parallel);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_parallel);
	/* keep the steady pool's connections for reuse: by default the multi handle keeps 4 per
	 * attached call, so as a pass winds down it closes connections the next pass opens again
	 * (a TCP and TLS handshake each). Connections past the steady pool, opened for a backlog,
	 * are closed as their calls end: the cache never holds more than the steady pool. */
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)steady);
	for (i = 0; i < steady; i++) {
		b->idle[i] = curl_easy_init();
		if (b->idle[i] == NULL)
			goto fail;
		b->nidle++;
		b->nhandles++;
	}
	return b;
fail:
	tg_batch_free(b);
	return NULL;
}

static void xfer_free(struct xfer *x)
{
	secmem_free_str(x->url);
	free(x->body);
	tg_exchange_free(x->ex);
	free(x);
}

static void free_list(struct xfer *x)
{
	struct xfer *next;

	for (; x != NULL; x = next) {
		next = x->next;
		xfer_free(x);
	}
}

/* Puts x, finished or dropped, at the end of the calls to be read back. */
static void push_over(struct tg_batch *b, struct xfer *x)
{
	x->next = NULL;
	if (b->over_tail != NULL)
		b->over_tail->next = x;
	else
		b->over = x;
	b->over_tail = x;
}

/* Moves every queued call (never started) to the calls to be read back. */
static void drop_queue(struct tg_batch *b)
{
	struct xfer *x;

	while ((x = b->head) != NULL) {
		b->head = x->next;
		push_over(b, x);
	}
	b->tail = NULL;
}

void tg_batch_free(struct tg_batch *b)
{
	int i;

	if (b == NULL)
		return;
	free_list(b->head);
	free_list(b->over);
	for (i = 0; i < b->nidle; i++)
		curl_easy_cleanup(b->idle[i]);
	free(b->idle);
	if (b->multi != NULL)
		curl_multi_cleanup(b->multi);
	free(b);
}

int tg_batch_add_delete(struct tg_batch *b, const char *chat_id, const long long *ids, int n,
			void *tag)
{
	char body[256 + 21 * TG_DELETE_MESSAGES_MAX];
	size_t len;
	struct xfer *x;

	if (tg_request_delete(body, sizeof body, &len, chat_id, ids, n) != 0)
		return -1;
	x = calloc(1, sizeof *x);
	if (x == NULL)
		return -1;
	x->tag = tag;
	x->method = n == 1 ? TG_DELETE_MESSAGE : TG_DELETE_MESSAGES;
	x->body = strdup(body);
	if (x->body == NULL || (x->url = tg_method_url(b->tg, x->method)) == NULL) {
		xfer_free(x);
		return -1;
	}
	if (b->tail != NULL)
		b->tail->next = x;
	else
		b->head = x;
	b->tail = x;
	return 0;
}

/* Starts the first queued call on an idle handle. Returns 0, or -1 when it cannot start. */
static int start_next(struct tg_batch *b)
{
	struct xfer *x = b->head;

	if (x->ex == NULL && (x->ex = tg_exchange_new(x->body, x->method)) == NULL)
		return -1;
	if (b->nidle == 0 && b->nhandles < b->max_parallel &&
	    (b->idle[b->nidle] = curl_easy_init()) != NULL) {
		b->nidle++;
		b->nhandles++;
	}
	if (b->nidle == 0)
		return -1;
	x->easy = b->idle[--b->nidle];
	tg_exchange_prepare(b->tg, x->easy, x->url, x->ex, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(b->multi, x->easy) != CURLM_OK) {
		b->idle[b->nidle++] = x->easy;
		x->easy = NULL;
		return -1;
	}
	b->head = x->next;
	if (b->head == NULL)
		b->tail = NULL;
	x->started = 1;
	b->running++;
	return 0;
}

/* Moves every finished call to the calls to be read back. */
static void collect_finished(struct tg_batch *b)
{
	CURLMsg *m;
	int msgs;

	while ((m = curl_multi_info_read(b->multi, &msgs)) != NULL) {
		struct xfer *x = NULL;
		CURL *easy = m->easy_handle;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		tg_exchange_conclude(b->tg, x->method, easy, m->data.result, x->ex, x->errbuf, &x->res);
		curl_multi_remove_handle(b->multi, easy);
		b->idle[b->nidle++] = easy;
		x->easy = NULL;
		b->running--;
		push_over(b, x);
	}
}

/* Ends a run of steps: the calls never started are dropped, and the handles a backlog added
 * to the steady pool are freed. */
static int go_idle(struct tg_batch *b)
{
	drop_queue(b);
	b->halted = 0;
	while (b->nhandles > b->steady && b->nidle > 0) {
		curl_easy_cleanup(b->idle[--b->nidle]);
		b->nhandles--;
	}
	return 0;
}

int tg_batch_step(struct tg_batch *b, int stop, int wait_ms)
{
	int still;

	/* every queued call starts, up to max_parallel: calls in flight grow with the backlog */
	while (!b->halted && !stop && b->head != NULL && b->running < b->max_parallel)
		if (start_next(b) != 0)
			break;
	if (b->running == 0) /* nothing runs, so nothing queued will start either */
		return go_idle(b);
	curl_multi_perform(b->multi, &still);
	collect_finished(b);
	if (b->running == 0 && (b->head == NULL || b->halted || stop))
		return go_idle(b);
	if (b->running > 0)
		curl_multi_poll(b->multi, NULL, 0, wait_ms, NULL);
	return 1;
}

int tg_batch_next_done(struct tg_batch *b, struct tg_done *out)
{
	struct xfer *x = b->over;

	if (x == NULL)
		return 0;
	b->over = x->next;
	if (b->over == NULL)
		b->over_tail = NULL;
	out->tag = x->tag;
	out->started = x->started;
	if (x->started)
		out->res = x->res;
	else
		memset(&out->res, 0, sizeof out->res);
	xfer_free(x);
	return 1;
}

void tg_batch_halt(struct tg_batch *b)
{
	b->halted = 1;
}
