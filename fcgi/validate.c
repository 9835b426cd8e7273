/* validate.c — the field tables for POST /send-otp and POST /revoke-otp. See validate.h. */
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secmem.h"

#define MSG_MAX 160

/* A field checker: 0 and out filled, or -1 with a pydantic type and message. ctx and out are
 * the table's own types (struct send_otp_limits and struct send_otp_request for /send-otp). */
typedef int (*field_check)(json_t *value, const void *ctx, void *out, const char **type,
			   char *msg);

struct field {
	const char *name;
	int required;
	field_check check;
};

static int fail(const char **type, char *msg, const char *t, const char *m)
{
	*type = t;
	snprintf(msg, MSG_MAX, "%s", m);
	return -1;
}

static int all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* "-?digits" within int64, without leading zeros (Telegram has no chat "0123", and "0123" must
 * not count as a chat apart from "123") */
static int is_numeric_chat_id(const char *s)
{
	const char *digits = s[0] == '-' ? s + 1 : s;
	char *end;
	long long v;

	if (!all_digits(digits) || digits[0] == '0')
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	(void)v;
	return errno == 0 && *end == '\0';
}

/* "@" and 5-32 letters, digits or underscores */
static int is_channel_username(const char *s)
{
	size_t n;

	if (s[0] != '@')
		return 0;
	for (n = 1; s[n] != '\0'; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_')
			return 0;
	return n - 1 >= 5 && n - 1 <= 32;
}

/* chat_id in every form /send-otp accepts, normalised the same way for both endpoints. A JSON
 * integer is turned into its decimal text first and then meets the string form's rule, so that
 * 0 is refused as "0" is. */
static int parse_chat_id(json_t *v, char chat_id[CHAT_ID_MAX], const char **type, char *msg)
{
	char digits[CHAT_ID_MAX];
	const char *s;

	if (json_is_integer(v)) {
		snprintf(digits, sizeof digits, "%lld", (long long)json_integer_value(v));
		s = digits;
	} else if (json_is_string(v)) {
		s = json_string_value(v);
	} else {
		return fail(type, msg, "string_type", "Input should be a valid string");
	}
	if (strlen(s) >= CHAT_ID_MAX || (!is_numeric_chat_id(s) && !is_channel_username(s)))
		return fail(type, msg, "value_error",
			    "Value error, chat_id must be a numeric string (can start with -), "
			    "a JSON integer, or an @channelusername of 5-32 letters, digits or "
			    "underscores");
	snprintf(chat_id, CHAT_ID_MAX, "%s", s);
	return 0;
}

static int check_chat_id(json_t *v, const void *ctx, void *out, const char **type, char *msg)
{
	(void)ctx;
	return parse_chat_id(v, ((struct send_otp_request *)out)->chat_id, type, msg);
}

static int check_otp(json_t *v, const void *ctx, void *outp, const char **type, char *msg)
{
	struct send_otp_request *out = outp;
	const char *s;
	size_t n;

	(void)ctx;
	if (!json_is_string(v))
		return fail(type, msg, "string_type", "Input should be a valid string");
	s = json_string_value(v);
	if (!all_digits(s))
		return fail(type, msg, "value_error", "Value error, otp must contain only digits");
	n = strlen(s);
	if (n < 4 || n > OTP_MAX_DIGITS)
		return fail(type, msg, "value_error", "Value error, otp must be 4-8 digits long");
	memcpy(out->otp, s, n + 1);
	return 0;
}

static int check_expire(json_t *v, const void *ctx, void *outp, const char **type, char *msg)
{
	const struct send_otp_limits *lim = ctx;
	struct send_otp_request *out = outp;
	json_int_t n;

	if (json_is_null(v)) {
		out->expire_seconds = lim->default_expire_s;
		return 0;
	}
	if (!json_is_integer(v))
		return fail(type, msg, "int_type", "Input should be a valid integer");
	n = json_integer_value(v);
	if (n < lim->min_expire_s || n > lim->max_expire_s) {
		*type = "value_error";
		snprintf(msg, MSG_MAX, "Value error, expire_seconds must be between %d and %d",
			 lim->min_expire_s, lim->max_expire_s);
		return -1;
	}
	out->expire_seconds = (int)n;
	return 0;
}

static const struct field send_fields[] = {
	{ "chat_id", 1, check_chat_id },
	{ "otp", 1, check_otp },
	{ "expire_seconds", 0, check_expire },
};

static int check_revoke_chat_id(json_t *v, const void *ctx, void *out, const char **type,
				char *msg)
{
	(void)ctx;
	return parse_chat_id(v, ((struct revoke_otp_request *)out)->chat_id, type, msg);
}

/* a positive integer (Telegram's message ids start at 1); strict like expire_seconds: no
 * strings, floats or booleans */
static int check_message_id(json_t *v, const void *ctx, void *out, const char **type, char *msg)
{
	(void)ctx;
	if (!json_is_integer(v))
		return fail(type, msg, "int_type", "Input should be a valid integer");
	if (json_integer_value(v) < 1)
		return fail(type, msg, "greater_than", "Input should be greater than 0");
	((struct revoke_otp_request *)out)->message_id = (long long)json_integer_value(v);
	return 0;
}

static const struct field revoke_fields[] = {
	{ "chat_id", 1, check_revoke_chat_id },
	{ "message_id", 1, check_message_id },
};

#define NFIELDS(t) (sizeof(t) / sizeof(t)[0])

static void add_error(json_t *detail, const char *field, const char *type, const char *msg)
{
	json_t *loc = field != NULL ? json_pack("[s,s]", "body", field) : json_pack("[s]", "body");

	json_array_append_new(detail, json_pack("{s:s, s:o, s:s}", "type", type, "loc", loc,
						"msg", msg));
}

static int known_field(const struct field *fields, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(fields[i].name, key) == 0)
			return 1;
	return 0;
}

/* Parses body and runs the table over it. Returns 0, or -1 with *detail set (caller owns). */
static int run_table(const struct field *fields, size_t n, const char *body, size_t len,
		     const void *ctx, void *out, json_t **detail)
{
	json_t *root = NULL, *errors = json_array(), *v;
	json_error_t jerr;
	const char *key, *type;
	char msg[MSG_MAX];
	size_t i;
	int rc = -1;

	root = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	secmem_wipe(&jerr, sizeof jerr); /* its text quotes the input near the error: the OTP */
	if (root == NULL) {
		add_error(errors, NULL, "json_invalid", "JSON decode error");
		goto out;
	}
	if (!json_is_object(root)) {
		add_error(errors, NULL, "model_attributes_type",
			  "Input should be a valid dictionary or object to extract fields from");
		goto out;
	}
	for (i = 0; i < n; i++) {
		v = json_object_get(root, fields[i].name);
		if (v == NULL) {
			if (fields[i].required)
				add_error(errors, fields[i].name, "missing", "Field required");
			continue;
		}
		if (fields[i].check(v, ctx, out, &type, msg) != 0)
			add_error(errors, fields[i].name, type, msg);
	}
	json_object_foreach(root, key, v) {
		if (!known_field(fields, n, key))
			add_error(errors, key, "extra_forbidden", "Extra inputs are not permitted");
	}
	rc = json_array_size(errors) == 0 ? 0 : -1;
out:
	json_decref(root);
	if (rc == 0) {
		json_decref(errors);
		*detail = NULL;
	} else {
		*detail = errors;
	}
	return rc;
}

int validate_send_otp(const char *body, size_t len, const struct send_otp_limits *lim,
		      struct send_otp_request *out, json_t **detail)
{
	int rc;

	memset(out, 0, sizeof *out);
	out->expire_seconds = lim->default_expire_s;
	rc = run_table(send_fields, NFIELDS(send_fields), body, len, lim, out, detail);
	if (rc != 0)
		secmem_wipe(out->otp, sizeof out->otp);
	return rc;
}

int validate_revoke_otp(const char *body, size_t len, struct revoke_otp_request *out,
			json_t **detail)
{
	memset(out, 0, sizeof *out);
	return run_table(revoke_fields, NFIELDS(revoke_fields), body, len, NULL, out, detail);
}
