/* tg_reply.c — reading the Bot API's replies and cleaning its text. See tg_reply.h. */
#include "tg_reply.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "secmem.h"

/* Bot API method names, as in the URL. */
static const char *const method_names[] = {
	[TG_SEND_MESSAGE] = "sendMessage",
	[TG_DELETE_MESSAGE] = "deleteMessage",
	[TG_DELETE_MESSAGES] = "deleteMessages",
};

static const char *const status_names[] = {
	[TG_OK] = "ok",
	[TG_NOT_FOUND] = "not_found",
	[TG_REFUSED] = "refused",
	[TG_RETRY_AFTER] = "retry_after",
	[TG_SERVER_ERROR] = "server_error",
	[TG_TIMEOUT] = "timeout",
	[TG_UNREACHABLE] = "unreachable",
	[TG_NO_ANSWER] = "no_answer",
	[TG_BAD_REPLY] = "bad_reply",
};

const char *tg_status_name(enum tg_status st)
{
	return status_names[st];
}

const char *tg_method_name(enum tg_method method)
{
	return method_names[method];
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t need, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		need = 2;
		cp = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		need = 3;
		cp = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		need = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	for (i = 1; i < need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return need;
}

/* Whether the code point encoded at s (k bytes, valid) is one a log line or a terminal would
 * act on: C0, DEL, C1, the line and paragraph separators, bidirectional embeddings, overrides
 * and isolates. */
static int is_control(const unsigned char *s, size_t k)
{
	if (k == 1)
		return s[0] < 0x20 || s[0] == 0x7F;
	if (k == 2)
		return s[0] == 0xC2 && s[1] >= 0x80 && s[1] <= 0x9F;
	if (k == 3 && s[0] == 0xE2 && s[1] == 0x80)
		return s[2] >= 0xA8 && s[2] <= 0xAE; /* U+2028..U+202E */
	if (k == 3 && s[0] == 0xE2 && s[1] == 0x81)
		return s[2] >= 0xA6 && s[2] <= 0xA9; /* U+2066..U+2069 */
	return 0;
}

#define CLEAN_SCAN_MAX 1024
#define SECRET_PIECE_MIN 4

/* Length of the longest run at s[0..n) (n > 0) that occurs in secret[0..m). */
static size_t secret_run(const char *s, size_t n, const char *secret, size_t m)
{
	const char *p = secret, *end = secret + m;
	size_t best = 0, k;

	/* only where secret holds s[0]: most bytes of a text are in no token */
	while (p < end && (p = memchr(p, s[0], (size_t)(end - p))) != NULL) {
		for (k = 1; k < n && p + k < end && s[k] == p[k]; k++)
			;
		if (k > best)
			best = k;
		p++;
	}
	return best;
}

void tg_clean_text(char *dst, size_t cap, const char *src, size_t len, const char *token)
{
	char plain[CLEAN_SCAN_MAX + 1], masked[CLEAN_SCAN_MAX + 1];
	const unsigned char *u = (const unsigned char *)src;
	const char *secret = NULL, *colon = token != NULL ? strrchr(token, ':') : NULL;
	size_t n = 0, m = 0, i, k, run, secret_len = 0, keep;
	int cut = len > CLEAN_SCAN_MAX;

	if (cap < 4)
		return;
	if (token != NULL && token[0] != '\0') {
		/* the bot's id before the ':' is public; what follows is the secret */
		secret = colon != NULL && colon[1] != '\0' ? colon + 1 : token;
		secret_len = strlen(secret);
	}
	/* characters: invalid bytes and controls replaced, never longer than the input */
	if (len > CLEAN_SCAN_MAX)
		len = CLEAN_SCAN_MAX;
	for (i = 0; i < len; i += k) {
		k = utf8_len(u + i, len - i);
		if (k == 0) {
			plain[n++] = '?';
			k = 1;
		} else if (is_control(u + i, k)) {
			plain[n++] = ' ';
		} else {
			memcpy(plain + n, u + i, k);
			n += k;
		}
	}
	/* the token's secret, whole or in pieces: "***" for a run of at least 4 bytes of it,
	 * starting and ending on character boundaries */
	for (i = 0; i < n; i += k) {
		run = 0;
		if (secret != NULL && ((unsigned char)plain[i] & 0xC0) != 0x80) {
			run = secret_run(plain + i, n - i, secret, secret_len);
			while (run > 0 && i + run < n && ((unsigned char)plain[i + run] & 0xC0) == 0x80)
				run--;
		}
		if (run >= SECRET_PIECE_MIN || (run > 0 && run == secret_len)) {
			if (m + 3 > CLEAN_SCAN_MAX)
				break;
			memcpy(masked + m, "***", 3);
			m += 3;
			k = run;
		} else {
			if (m + 1 > CLEAN_SCAN_MAX)
				break;
			masked[m++] = plain[i];
			k = 1;
		}
	}
	if (i < n)
		cut = 1;
	/* cut on a character boundary, within the caller's buffer and the description limit */
	keep = TG_DESCRIPTION_MAX < cap - 4 ? TG_DESCRIPTION_MAX : cap - 4;
	if (m > keep) {
		while (keep > 0 && ((unsigned char)masked[keep] & 0xC0) == 0x80)
			keep--;
		m = keep;
		cut = 1;
	}
	memcpy(dst, masked, m);
	if (cut) {
		memcpy(dst + m, "\xe2\x80\xa6", 3); /* … */
		m += 3;
	}
	dst[m] = '\0';
	secmem_wipe(plain, sizeof plain);
	secmem_wipe(masked, sizeof masked);
}

/* Telegram's error_code, range-checked: an HTTP error status (400..599), else the reply's own
 * HTTP status when that is one, else 0. */
static int error_code_of(json_t *v, long http_status)
{
	if (json_is_integer(v) && json_integer_value(v) >= 400 && json_integer_value(v) <= 599)
		return (int)json_integer_value(v);
	if (http_status >= 400 && http_status <= 599)
		return (int)http_status;
	return 0;
}

/* parameters.retry_after in whole seconds, in [1, TG_RETRY_AFTER_MAX]: absent, zero, negative or
 * not a number means 1; fractions round up; anything larger saturates. */
static int retry_after_of(json_t *v)
{
	double d;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 1)
			return 1;
		return json_integer_value(v) > TG_RETRY_AFTER_MAX ? TG_RETRY_AFTER_MAX
								  : (int)json_integer_value(v);
	}
	if (json_is_real(v)) {
		d = json_real_value(v);
		if (!(d >= 1)) /* NaN too */
			return 1;
		if (d >= TG_RETRY_AFTER_MAX)
			return TG_RETRY_AFTER_MAX;
		return (int)d + ((double)(int)d < d); /* rounded up */
	}
	return 1;
}

/* A success: what it must carry for method. */
static void read_success(enum tg_method method, json_t *root, struct tg_result *res)
{
	json_t *result = json_object_get(root, "result"), *v;

	if (method != TG_SEND_MESSAGE) {
		/* deleteMessage(s) answer result true; false or anything else is not a deletion */
		if (json_is_true(result)) {
			res->status = TG_OK;
			return;
		}
		res->status = TG_BAD_REPLY;
		snprintf(res->description, sizeof res->description,
			 "Telegram answered ok without result true");
		return;
	}
	v = json_object_get(result, "message_id");
	if (json_is_integer(v) && json_integer_value(v) >= 1 &&
	    json_integer_value(v) <= TG_MESSAGE_ID_MAX) {
		res->status = TG_OK;
		res->message_id = json_integer_value(v);
		return;
	}
	/* it may have been delivered, but without its id it cannot be deleted: not a success */
	res->status = TG_BAD_REPLY;
	snprintf(res->description, sizeof res->description,
		 "Telegram answered ok without a valid message_id");
}

void tg_parse_reply(enum tg_method method, long http_status, const char *body, size_t len,
		    const char *token, struct tg_result *res)
{
	json_t *root = NULL, *ok, *v;
	json_error_t jerr;

	memset(res, 0, sizeof *res);
	res->http_status = http_status;
	/* duplicate keys would make two readers of one reply disagree: not the Bot API's JSON */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	secmem_wipe(&jerr, sizeof jerr); /* it may quote the reply, which echoes the OTP */
	ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok)) {
		/* a proxy's error page when 5xx; otherwise an answer we cannot read */
		res->status = http_status >= 500 && http_status <= 599 ? TG_SERVER_ERROR
								       : TG_BAD_REPLY;
		snprintf(res->description, sizeof res->description,
			 "unexpected reply from the Bot API (HTTP %ld)", http_status);
		goto out;
	}
	if (json_is_true(ok)) {
		read_success(method, root, res);
		goto out;
	}
	res->error_code = error_code_of(json_object_get(root, "error_code"), http_status);
	v = json_object_get(root, "description");
	if (json_is_string(v))
		tg_clean_text(res->description, sizeof res->description, json_string_value(v),
			      json_string_length(v), token);
	else
		snprintf(res->description, sizeof res->description, "no description");
	if (res->error_code == 429) {
		res->status = TG_RETRY_AFTER;
		res->retry_after_s =
			retry_after_of(json_object_get(json_object_get(root, "parameters"),
						       "retry_after"));
	} else if (res->error_code >= 500) {
		res->status = TG_SERVER_ERROR;
	} else if (res->error_code == 0) {
		res->status = TG_BAD_REPLY; /* a refusal without any status to go by */
	} else if (method != TG_SEND_MESSAGE && json_is_string(v) &&
		   strstr(json_string_value(v), "message to delete not found") != NULL) {
		/* read before cleaning, which could mask a word of it */
		res->status = TG_NOT_FOUND;
	} else {
		res->status = TG_REFUSED;
	}
out:
	json_decref(root);
}
