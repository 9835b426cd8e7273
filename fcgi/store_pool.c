/* store_pool.c — a mutex-guarded stack of idle stores. See store_pool.h. */
#include "store_pool.h"

#include <pthread.h>
#include <stdlib.h>

struct store_pool {
	pthread_mutex_t lock;
	pthread_cond_t given; /* a store came back, or an opening failed */
	struct store_config config;
	struct store **idle;  /* the last given back on top: its pages are the likeliest cached */
	int nidle;
	int nopen, max_open;  /* taken + idle (+ being opened) */
};

struct store_pool *store_pool_new(const struct store_config *c, int max_open)
{
	struct store_pool *p = calloc(1, sizeof *p);

	if (p == NULL || max_open < 1 ||
	    (p->idle = calloc((size_t)max_open, sizeof *p->idle)) == NULL) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->given, NULL);
	p->config = *c;
	p->max_open = max_open;
	return p;
}

void store_pool_free(struct store_pool *p)
{
	if (p == NULL)
		return;
	while (p->nidle > 0)
		store_close(p->idle[--p->nidle]);
	pthread_cond_destroy(&p->given);
	pthread_mutex_destroy(&p->lock);
	free(p->idle);
	free(p);
}

struct store *store_pool_take(struct store_pool *p, char *err, size_t errlen)
{
	struct store *s = NULL;

	pthread_mutex_lock(&p->lock);
	while (p->nidle == 0 && p->nopen == p->max_open)
		pthread_cond_wait(&p->given, &p->lock);
	if (p->nidle > 0)
		s = p->idle[--p->nidle];
	else
		p->nopen++; /* counted now, opened outside the lock */
	pthread_mutex_unlock(&p->lock);
	if (s != NULL)
		return s;
	s = store_open_config(&p->config, err, errlen);
	if (s == NULL) {
		pthread_mutex_lock(&p->lock);
		p->nopen--;
		pthread_cond_signal(&p->given); /* a waiter may try to open one in its turn */
		pthread_mutex_unlock(&p->lock);
	}
	return s;
}

void store_pool_give(struct store_pool *p, struct store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->idle[p->nidle++] = s;
	pthread_cond_signal(&p->given);
	pthread_mutex_unlock(&p->lock);
}

int store_pool_open_count(struct store_pool *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->nopen;
	pthread_mutex_unlock(&p->lock);
	return n;
}
