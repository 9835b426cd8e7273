/* secmem.c — wiping buffers that held secrets, and a wiping allocator for jansson. */
#define _DEFAULT_SOURCE
#include "secmem.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void secmem_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

void secmem_free_str(char *s)
{
	if (s == NULL)
		return;
	secmem_wipe(s, strlen(s));
	free(s);
}

/* Each block carries its size in front, so that free can wipe it; the header is 16 bytes to
 * keep the user block aligned like malloc's. */
#define HEADER 16

static void *wiping_malloc(size_t n)
{
	unsigned char *p = malloc(n + HEADER);

	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof n);
	return p + HEADER;
}

static void wiping_free(void *ptr)
{
	unsigned char *p;
	size_t n;

	if (ptr == NULL)
		return;
	p = (unsigned char *)ptr - HEADER;
	memcpy(&n, p, sizeof n);
	explicit_bzero(p, n + HEADER);
	free(p);
}

void secmem_install_json_allocator(void)
{
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}

void secmem_json_free(char *s)
{
	json_malloc_t m;
	json_free_t f;

	if (s == NULL)
		return;
	json_get_alloc_funcs(&m, &f);
	f(s);
}
