/* store_pool.c — a mutex-guarded stack of idle stores. See store_pool.h. */
#include "store_pool.h"

#include <pthread.h>
#include <stdlib.h>

struct store_pool {
	pthread_mutex_t lock;
	struct store_config config;
	struct store **idle; /* the last given back on top: its pages are the likeliest cached */
	int nidle, max_idle;
	int nopen;           /* taken + idle */
};

struct store_pool *store_pool_new(const struct store_config *c, int max_idle)
{
	struct store_pool *p = calloc(1, sizeof *p);

	if (p == NULL || (p->idle = calloc((size_t)max_idle + 1, sizeof *p->idle)) == NULL) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	p->config = *c;
	p->max_idle = max_idle;
	return p;
}

void store_pool_free(struct store_pool *p)
{
	if (p == NULL)
		return;
	while (p->nidle > 0)
		store_close(p->idle[--p->nidle]);
	pthread_mutex_destroy(&p->lock);
	free(p->idle);
	free(p);
}

struct store *store_pool_take(struct store_pool *p, char *err, size_t errlen)
{
	struct store *s = NULL;

	pthread_mutex_lock(&p->lock);
	if (p->nidle > 0)
		s = p->idle[--p->nidle];
	else
		p->nopen++; /* counted before opening: the opening happens outside the lock */
	pthread_mutex_unlock(&p->lock);
	if (s != NULL)
		return s;
	s = store_open_config(&p->config, err, errlen);
	if (s == NULL) {
		pthread_mutex_lock(&p->lock);
		p->nopen--;
		pthread_mutex_unlock(&p->lock);
	}
	return s;
}

void store_pool_give(struct store_pool *p, struct store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->nidle < p->max_idle) {
		p->idle[p->nidle++] = s;
		s = NULL;
	} else {
		p->nopen--;
	}
	pthread_mutex_unlock(&p->lock);
	store_close(s); /* outside the lock: closing a SQLite connection may checkpoint */
}

int store_pool_open_count(struct store_pool *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->nopen;
	pthread_mutex_unlock(&p->lock);
	return n;
}
