/* apikeys.c — the API keys, as SHA-256 digests, read again when their file changes. See
 * apikeys.h. */
#include "apikeys.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "log.h"
#include "secmem.h"

#define KEY_MAX 512          /* bytes of a key as presented */
#define LINE_MAX_BYTES 1024
#define FILE_KEYS_MAX 1024
#define FIXED_KEYS_MAX 64    /* API_KEY and OTP_API_KEYS together */
#define CHECK_EVERY_MS 1000

struct key {
	char name[APIKEY_NAME_MAX + 1];
	unsigned char digest[32];
	int limit;
};

struct keyset {
	struct key *keys;
	int n;
};

struct apikeys {
	pthread_rwlock_t lock;      /* guards set */
	struct keyset set;          /* the fixed keys, then the file's */
	int fixed;                  /* how many of set.keys come from API_KEY and OTP_API_KEYS */
	char *file;                 /* OTP_API_KEYS_FILE, or NULL */
	pthread_mutex_t file_lock;  /* one thread looks at the file at a time */
	int64_t checked_ms;         /* when it last looked */
	struct stat seen;           /* the file as it was last read (or refused) */
};

static int sha256(const char *s, size_t len, unsigned char out[32])
{
	unsigned int n = 0;

	return EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

static int valid_name(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > APIKEY_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return 0;
	return 1;
}

/* A key is visible ASCII without spaces or commas, 1 to KEY_MAX bytes. */
static int valid_key(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > KEY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~' || s[i] == ',')
			return 0;
	return 1;
}

static int hex_digest(const char *s, size_t n, unsigned char out[32])
{
	size_t i;

	if (n != 64)
		return -1;
	for (i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)s[i]))
			return -1;
	for (i = 0; i < 32; i++) {
		unsigned int b;

		if (sscanf(s + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	return 0;
}

/* The next field of line after *p (spaces and tabs between); its length in *n. NULL at the end
 * or at a comment. */
static const char *next_field(const char **p, size_t *n)
{
	const char *s = *p + strspn(*p, " \t\r\n");

	if (*s == '\0' || *s == '#')
		return NULL;
	*n = strcspn(s, " \t\r\n");
	*p = s + *n;
	return s;
}

int apikeys_parse_line(const char *line, char name[APIKEY_NAME_MAX + 1],
		       unsigned char digest[32], int *limit, char *err, size_t errlen)
{
	const char *p = line, *f, *k;
	size_t n, kn;
	char *end;
	long v;

	*limit = 0;
	f = next_field(&p, &n);
	if (f == NULL)
		return 0;
	if (!valid_name(f, n)) {
		snprintf(err, errlen, "a key's name must be 1-%d letters, digits, '_', '.' or '-'",
			 APIKEY_NAME_MAX);
		return -1;
	}
	memcpy(name, f, n);
	name[n] = '\0';
	k = next_field(&p, &kn);
	if (k == NULL) {
		snprintf(err, errlen, "key \"%s\" has no key after its name", name);
		return -1;
	}
	if (kn > 7 && strncmp(k, "sha256:", 7) == 0) {
		if (hex_digest(k + 7, kn - 7, digest) != 0) {
			snprintf(err, errlen, "key \"%s\": sha256: must be followed by 64 hex digits",
				 name);
			return -1;
		}
	} else if (!valid_key(k, kn) || sha256(k, kn, digest) != 0) {
		snprintf(err, errlen, "key \"%s\" must be 1-%d visible ASCII characters", name, KEY_MAX);
		return -1;
	}
	f = next_field(&p, &n);
	if (f != NULL) {
		if (n < 7 || strncmp(f, "limit=", 6) != 0) {
			snprintf(err, errlen, "key \"%s\": after the key only limit=N may follow", name);
			return -1;
		}
		errno = 0;
		v = strtol(f + 6, &end, 10);
		if (errno != 0 || end != f + n || v < 1 || v > APIKEY_LIMIT_MAX) {
			snprintf(err, errlen, "key \"%s\": limit must be between 1 and %d", name,
				 APIKEY_LIMIT_MAX);
			return -1;
		}
		*limit = (int)v;
		if (next_field(&p, &n) != NULL) {
			snprintf(err, errlen, "key \"%s\": too many fields", name);
			return -1;
		}
	}
	return 1;
}

static int add_key(struct keyset *set, int cap, const char *name, const unsigned char digest[32],
		   int limit, char *err, size_t errlen)
{
	int i;

	for (i = 0; i < set->n && name[0] != '\0'; i++) {
		if (strcmp(set->keys[i].name, name) == 0) {
			snprintf(err, errlen, "the key name \"%s\" is given twice", name);
			return -1;
		}
	}
	if (set->n == cap) {
		snprintf(err, errlen, "more than %d keys", cap);
		return -1;
	}
	memcpy(set->keys[set->n].name, name, strlen(name) + 1);
	memcpy(set->keys[set->n].digest, digest, 32);
	set->keys[set->n].limit = limit;
	set->n++;
	return 0;
}

/* "key" or "name:key" items of OTP_API_KEYS, after API_KEY. */
static int read_fixed(const struct apikeys_config *c, struct keyset *set, int cap, char *err,
		      size_t errlen)
{
	unsigned char digest[32];
	const char *p, *item, *colon;
	char name[APIKEY_NAME_MAX + 1];
	size_t n;

	if (c->api_key != NULL && c->api_key[0] != '\0') {
		if (sha256(c->api_key, strlen(c->api_key), digest) != 0 ||
		    add_key(set, cap, "", digest, 0, err, errlen) != 0)
			return -1;
	}
	for (p = c->list; p != NULL && *p != '\0'; p = item + n + (item[n] == ',')) {
		item = p + strspn(p, " ");
		n = strcspn(item, ",");
		while (n > 0 && item[n - 1] == ' ')
			n--;
		if (n == 0) {
			if (item[0] == '\0')
				break;
			snprintf(err, errlen, "OTP_API_KEYS holds an empty key");
			return -1;
		}
		colon = memchr(item, ':', n);
		name[0] = '\0';
		if (colon != NULL && valid_name(item, (size_t)(colon - item))) {
			memcpy(name, item, (size_t)(colon - item));
			name[colon - item] = '\0';
			if (!valid_key(colon + 1, n - (size_t)(colon - item) - 1)) {
				snprintf(err, errlen, "OTP_API_KEYS: key \"%s\" is empty or malformed", name);
				return -1;
			}
			if (sha256(colon + 1, n - (size_t)(colon - item) - 1, digest) != 0)
				return -1;
		} else if (!valid_key(item, n) || sha256(item, n, digest) != 0) {
			snprintf(err, errlen, "OTP_API_KEYS: key %d is malformed (visible ASCII, no spaces)",
				 set->n + 1);
			return -1;
		}
		if (add_key(set, cap, name, digest, 0, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* Appends the file's keys to set (which has room for FILE_KEYS_MAX more). */
static int read_file(const char *path, struct keyset *set, int cap, struct stat *st, char *err,
		     size_t errlen)
{
	char line[LINE_MAX_BYTES + 2], name[APIKEY_NAME_MAX + 1], why[160];
	unsigned char digest[32];
	int limit, lineno = 0, rc = -1, r;
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		snprintf(err, errlen, "OTP_API_KEYS_FILE: cannot open %.200s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), st) != 0) {
		snprintf(err, errlen, "OTP_API_KEYS_FILE: %.200s: %s", path, strerror(errno));
		goto out;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		lineno++;
		if (strlen(line) > LINE_MAX_BYTES) {
			snprintf(err, errlen, "%.200s:%d: line longer than %d bytes", path, lineno,
				 LINE_MAX_BYTES);
			goto out;
		}
		r = apikeys_parse_line(line, name, digest, &limit, why, sizeof why);
		if (r < 0 || (r == 1 && add_key(set, cap, name, digest, limit, why, sizeof why) != 0)) {
			snprintf(err, errlen, "%.200s:%d: %s", path, lineno, why);
			goto out;
		}
	}
	rc = ferror(f) ? -1 : 0;
	if (rc != 0)
		snprintf(err, errlen, "OTP_API_KEYS_FILE: %.200s: read error", path);
out:
	secmem_wipe(line, sizeof line);
	fclose(f);
	return rc;
}

/* A fresh set: the fixed keys (read from c, or copied from k's when c is NULL) and then the
 * file's. */
static int load(struct apikeys *k, const struct apikeys_config *c, struct keyset *out,
		struct stat *st, char *err, size_t errlen)
{
	int cap = FILE_KEYS_MAX + FIXED_KEYS_MAX;
	struct keyset set = { calloc((size_t)cap, sizeof(struct key)), 0 };

	memset(st, 0, sizeof *st);
	if (set.keys == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (c != NULL) {
		if (read_fixed(c, &set, FIXED_KEYS_MAX, err, errlen) != 0)
			goto fail;
		k->fixed = set.n;
	} else {
		memcpy(set.keys, k->set.keys, (size_t)k->fixed * sizeof(struct key));
		set.n = k->fixed;
	}
	if (k->file != NULL && read_file(k->file, &set, cap, st, err, errlen) != 0)
		goto fail;
	*out = set;
	return 0;
fail:
	secmem_wipe(set.keys, (size_t)cap * sizeof(struct key));
	free(set.keys);
	return -1;
}

struct apikeys *apikeys_new(const struct apikeys_config *c, char *err, size_t errlen)
{
	struct apikeys *k = calloc(1, sizeof *k);

	if (k == NULL || (c->file != NULL && (k->file = strdup(c->file)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		free(k);
		return NULL;
	}
	pthread_rwlock_init(&k->lock, NULL);
	pthread_mutex_init(&k->file_lock, NULL);
	if (load(k, c, &k->set, &k->seen, err, errlen) != 0) {
		apikeys_free(k);
		return NULL;
	}
	return k;
}

void apikeys_free(struct apikeys *k)
{
	if (k == NULL)
		return;
	if (k->set.keys != NULL)
		secmem_wipe(k->set.keys, (size_t)k->set.n * sizeof(struct key));
	free(k->set.keys);
	free(k->file);
	pthread_rwlock_destroy(&k->lock);
	pthread_mutex_destroy(&k->file_lock);
	free(k);
}

int apikeys_enabled(const struct apikeys *k)
{
	return k->fixed > 0 || k->file != NULL;
}

int apikeys_count(struct apikeys *k)
{
	int n;

	pthread_rwlock_rdlock(&k->lock);
	n = k->set.n;
	pthread_rwlock_unlock(&k->lock);
	return n;
}

/* Replaces the keys in force with set. */
static void install(struct apikeys *k, struct keyset set)
{
	struct keyset old;

	pthread_rwlock_wrlock(&k->lock);
	old = k->set;
	k->set = set;
	pthread_rwlock_unlock(&k->lock);
	secmem_wipe(old.keys, (size_t)old.n * sizeof(struct key));
	free(old.keys);
}

/* Reads the file again; file_lock held. */
static int reread(struct apikeys *k)
{
	struct keyset set;
	struct stat st;
	char err[512];

	if (load(k, NULL, &set, &st, err, sizeof err) != 0) {
		log_msg(LOG_ERROR, "the API keys file was not read again: %s; the keys in force stay",
			err);
		return -1;
	}
	k->seen = st;
	install(k, set);
	log_msg(LOG_INFO, "API keys read again from %s: %d in force", k->file, set.n);
	return 0;
}

int apikeys_reload(struct apikeys *k)
{
	int rc = 0;

	if (k->file == NULL)
		return 0;
	pthread_mutex_lock(&k->file_lock);
	rc = reread(k);
	pthread_mutex_unlock(&k->file_lock);
	return rc;
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the file again if it changed since it was last looked at; at most once a second, and
 * never making a request wait for another thread's look. */
static void maybe_reread(struct apikeys *k, int64_t now_ms)
{
	struct stat st;

	if (k->file == NULL || pthread_mutex_trylock(&k->file_lock) != 0)
		return;
	if (now_ms - k->checked_ms >= CHECK_EVERY_MS) {
		k->checked_ms = now_ms;
		if (stat(k->file, &st) != 0) {
			memset(&st, 0, sizeof st);
			if (k->seen.st_ino != 0)
				log_msg(LOG_ERROR, "the API keys file %s is gone: %s; the keys in force stay",
					k->file, strerror(errno));
			k->seen = st;
		} else if (!same_file(&st, &k->seen) && reread(k) != 0) {
			k->seen = st; /* logged once; looked at again when it changes */
		}
	}
	pthread_mutex_unlock(&k->file_lock);
}

int apikeys_check(struct apikeys *k, const char *presented, int64_t now_ms,
		  struct apikey_match *m)
{
	unsigned char digest[32], diff;
	size_t len = strlen(presented), b;
	int i, found = -1;

	maybe_reread(k, now_ms);
	if (len == 0 || len > KEY_MAX || sha256(presented, len, digest) != 0)
		return 0;
	pthread_rwlock_rdlock(&k->lock);
	for (i = 0; i < k->set.n; i++) {
		diff = 0;
		for (b = 0; b < 32; b++)
			diff |= (unsigned char)(digest[b] ^ k->set.keys[i].digest[b]);
		/* no early exit: every key costs the same whichever matches */
		found = diff == 0 && found < 0 ? i : found;
	}
	if (found >= 0) {
		const struct key *key = &k->set.keys[found];

		memcpy(m->name, key->name, sizeof m->name);
		if (key->name[0] != '\0')
			memcpy(m->owner, key->name, sizeof m->owner);
		else
			snprintf(m->owner, sizeof m->owner, "#%02x%02x%02x%02x", key->digest[0],
				 key->digest[1], key->digest[2], key->digest[3]);
		m->limit_per_minute = key->limit;
	}
	pthread_rwlock_unlock(&k->lock);
	secmem_wipe(digest, sizeof digest);
	return found >= 0;
}
