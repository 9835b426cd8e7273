/* secmem.c — wiping buffers that held secrets, and a wiping allocator for jansson. */
#define _DEFAULT_SOURCE
#include "secmem.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <jansson.h>

void secmem_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

/* noinline: its frame must lie below the caller's, over the frames of the calls that returned */
__attribute__((noinline)) void secmem_wipe_stack(void)
{
	unsigned char area[SECMEM_STACK_WIPE_BYTES];

	explicit_bzero(area, sizeof area);
	__asm__ __volatile__("" : : "r"(area) : "memory");
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

void *secmem_malloc(size_t n)
{
	return malloc(n);
}

void secmem_free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void *secmem_realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (p == NULL)
		return malloc(n);
	if (n == 0) {
		secmem_free(p);
		return NULL;
	}
	q = malloc(n);
	if (q == NULL)
		return NULL;
	old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	secmem_free(p);
	return q;
}

void *secmem_calloc(size_t nmemb, size_t size)
{
	return calloc(nmemb, size);
}

char *secmem_strdup(const char *s)
{
	return strdup(s);
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

int secmem_forbid_core_dumps(char *err, size_t errlen)
{
	const char *allow = getenv("OTP_ALLOW_CORE_DUMPS");
	struct rlimit none = { 0, 0 };

	if (allow != NULL && strcmp(allow, "1") == 0)
		return 1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(err, errlen, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
		return -1;
	}
	if (setrlimit(RLIMIT_CORE, &none) != 0) {
		snprintf(err, errlen, "setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
		return -1;
	}
	return 0;
}
