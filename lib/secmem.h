/* secmem.h — keeping secrets (OTPs, the bot token) out of freed memory. */
#ifndef OTP_SECMEM_H
#define OTP_SECMEM_H

#include <stddef.h>

/* Overwrites n bytes at p with zeros in a way the compiler cannot elide. NULL is allowed. */
void secmem_wipe(void *p, size_t n);

/* Wipes SECMEM_STACK_WIPE_BYTES of the stack below the caller's frame: where the functions it
 * called kept their locals. Libraries leave secrets there that no free can reach (a TLS record
 * decrypted, a reply read in a stack buffer, a formatted copy), and a thread that serves shorter
 * requests next may never overwrite them. Call after a call chain that handled a secret
 * returns; the thread's stack must have that much room left below the caller. */
#define SECMEM_STACK_WIPE_BYTES (64 * 1024)
void secmem_wipe_stack(void);

/* Wipes a NUL-terminated string in place and frees it. NULL is allowed. */
void secmem_free_str(char *s);

/* Makes jansson wipe every block it frees. Request bodies carry the OTP, and jansson copies
 * their strings into blocks of its own; call once at start, before any other jansson call. */
void secmem_install_json_allocator(void);

/* A malloc family whose free wipes the block first (its usable size), for libraries that take
 * allocators: libcurl keeps the token-bearing URL, the request body (the OTP) and Telegram's
 * echo of it in buffers of its own. realloc moves the data and wipes the old block. */
void *secmem_malloc(size_t n);
void secmem_free(void *p);
void *secmem_realloc(void *p, size_t n);
void *secmem_calloc(size_t nmemb, size_t size);
char *secmem_strdup(const char *s);

/* Core dumps would hold the token and OTPs: unless the environment says
 * OTP_ALLOW_CORE_DUMPS=1, makes this process non-dumpable (PR_SET_DUMPABLE 0, which also keeps
 * same-user ptrace and /proc/PID/mem out) and sets RLIMIT_CORE to 0, soft and hard. Call first
 * thing in main, before any secret is read. Returns 1 when dumps stay allowed, 0 when they were
 * turned off, -1 with the reason in err. Only the environment counts (not OTP_ENV_FILE): the
 * decision is taken before the settings, and with them the token, are read. */
int secmem_forbid_core_dumps(char *err, size_t errlen);

/* Frees a string that jansson allocated (json_dumps): it must go back to jansson's allocator,
 * whichever is installed, not to free(). NULL is allowed. */
void secmem_json_free(char *s);

#endif
