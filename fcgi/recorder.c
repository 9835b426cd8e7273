/* recorder.c — group commit of pending rows, led by whichever waiting thread is free to. See
 * recorder.h. */
#include "recorder.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_pool.h"

/* The most rows in one transaction: enough for every thread of a process, and a bound on the
 * leader's stack and on how long one commit keeps SQLite's lock. */
#define BATCH_MAX 64

/* A thread waiting for its row: on its own stack, linked into the queue until answered. */
struct waiter {
	struct store_pending_row *row;
	char *err;
	size_t errlen;
	int done;
	struct waiter *next;
};

struct recorder {
	pthread_mutex_t lock;
	pthread_cond_t answered;   /* a batch was written: its waiters have their answers */
	struct store_pool *pool;
	struct waiter *head, **tail; /* rows handed in, not yet in a batch */
	int writing;               /* a batch is being written: only one at a time */
};

struct recorder *recorder_new(struct store_pool *pool)
{
	struct recorder *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->answered, NULL);
	r->pool = pool;
	r->tail = &r->head;
	return r;
}

void recorder_free(struct recorder *r)
{
	if (r == NULL)
		return;
	pthread_cond_destroy(&r->answered);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Writes the rows of batch (n of them) in one call, outside the lock, and gives each waiter its
 * row's outcome. The waiters are blocked until marked done: their rows are safe to use. */
static void write_batch(struct recorder *r, struct waiter *batch, int n)
{
	struct store_pending_row rows[BATCH_MAX];
	char err[256] = "";
	struct store *s;
	struct waiter *w;
	int i;

	for (i = 0, w = batch; i < n; i++, w = w->next)
		rows[i] = *w->row;
	s = store_pool_take(r->pool, err, sizeof err);
	if (s == NULL) {
		for (i = 0; i < n; i++)
			rows[i].failed = 1;
	} else {
		if (store_pending_add_many(s, rows, n) > 0)
			snprintf(err, sizeof err, "%s", store_strerror(s));
		store_pool_give(r->pool, s);
	}
	for (i = 0, w = batch; i < n; i++, w = w->next) {
		*w->row = rows[i];
		if (rows[i].failed)
			snprintf(w->err, w->errlen, "%s", err);
	}
}

int recorder_add(struct recorder *r, struct store_pending_row *row, char *err, size_t errlen)
{
	struct waiter me = { row, err, errlen, 0, NULL }, *batch, *last;
	int n;

	pthread_mutex_lock(&r->lock);
	*r->tail = &me;
	r->tail = &me.next;
	while (!me.done) {
		if (r->writing) {
			pthread_cond_wait(&r->answered, &r->lock);
			continue;
		}
		/* nobody is writing: this thread writes what is queued (its own row among them, or
		 * in a later batch when more than BATCH_MAX wait ahead of it) */
		batch = last = r->head;
		for (n = 1; n < BATCH_MAX && last->next != NULL; n++)
			last = last->next;
		r->head = last->next;
		if (r->head == NULL)
			r->tail = &r->head;
		r->writing = 1;
		pthread_mutex_unlock(&r->lock);
		write_batch(r, batch, n);
		pthread_mutex_lock(&r->lock);
		/* under the lock: a waiter marked done may return and its frame go at once */
		for (; n > 0; n--, batch = last) {
			last = batch->next;
			batch->done = 1;
		}
		r->writing = 0;
		pthread_cond_broadcast(&r->answered);
	}
	pthread_mutex_unlock(&r->lock);
	return row->failed ? -1 : 0;
}
