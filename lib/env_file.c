/* env_file.c — KEY=VALUE settings files. See env_file.h. */
#include "env_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secmem.h"

static int copy_out(const char *src, size_t n, char *dst, size_t dstlen)
{
	if (n >= dstlen)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int env_file_parse_line(const char *line, char *key, size_t keylen, char *value, size_t valuelen,
		       char *err, size_t errlen)
{
	const char *p = line, *k, *eq, *v, *vend;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	if (strncmp(p, "export ", 7) == 0)
		p += 7;
	k = p;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	eq = p;
	if (eq == k || *eq != '=' || isdigit((unsigned char)*k)) {
		snprintf(err, errlen, "expected KEY=VALUE");
		return -1;
	}
	if (copy_out(k, (size_t)(eq - k), key, keylen) != 0) {
		snprintf(err, errlen, "key too long");
		return -1;
	}
	v = eq + 1;
	vend = v + strlen(v);
	while (vend > v && (vend[-1] == '\n' || vend[-1] == '\r'))
		vend--;
	if (*v == '"' || *v == '\'') {
		const char *close = memchr(v + 1, *v, (size_t)(vend - v - 1));
		const char *rest;

		if (close == NULL) {
			snprintf(err, errlen, "unterminated quote");
			return -1;
		}
		for (rest = close + 1; rest < vend && isspace((unsigned char)*rest); rest++)
			;
		if (rest < vend && *rest != '#') {
			snprintf(err, errlen, "text after the closing quote");
			return -1;
		}
		v++;
		vend = close;
	} else {
		const char *hash;

		/* an unquoted value ends at " #" (an inline comment) */
		for (hash = v; hash < vend; hash++)
			if (*hash == '#' && hash > v && isspace((unsigned char)hash[-1]))
				break;
		vend = hash;
		while (vend > v && isspace((unsigned char)vend[-1]))
			vend--;
	}
	if (copy_out(v, (size_t)(vend - v), value, valuelen) != 0) {
		snprintf(err, errlen, "value too long");
		return -1;
	}
	return 1;
}

int env_file_read(const char *path, const char *what, env_file_refuse_fn refuse, void *ctx,
		  char *err, size_t errlen)
{
	char line[4096], key[128], value[4096], why[256];
	FILE *f = fopen(path, "r");
	int lineno = 0, rc = -1;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open %s: %s", what, path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		int r, c;

		lineno++;
		/* a line that does not fit is an error: read in pieces, its tail would be taken
		 * for a line of its own and could set any key */
		if (strchr(line, '\n') == NULL && (c = getc(f)) != EOF) {
			if (c != '\n') {
				snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path,
					 lineno, sizeof line - 1);
				goto out;
			}
		}
		r = env_file_parse_line(line, key, sizeof key, value, sizeof value, why, sizeof why);
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			goto out;
		}
		if (r == 1 && refuse(key, ctx, why, sizeof why) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			goto out;
		}
		if (r == 1 && setenv(key, value, 0) != 0) {
			snprintf(err, errlen, "%s:%d: cannot set %s", path, lineno, key);
			goto out;
		}
	}
	rc = 0;
out:
	secmem_wipe(line, sizeof line);
	secmem_wipe(value, sizeof value);
	fclose(f);
	return rc;
}
