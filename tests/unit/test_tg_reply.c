/* test_tg_reply.c — lib/tg_reply.h and lib/tg_request.h, the pure halves of the Bot API client:
 * reading Bot API replies (untrusted: every number range-checked, the description cleaned),
 * cleaning text, status names, JSON quoting and the request bodies. Linked without the
 * transport (no libcurl). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tg_assert.h"
#include "tg_reply.h"
#include "tg_request.h"

static void parse(long http, const char *body, struct tg_result *res)
{
	memset(res, 0xA5, sizeof *res); /* tg_parse_reply clears it */
	tg_parse_reply(TG_SEND_MESSAGE, http, body, strlen(body), SECRET_TOKEN, res);
}

static void parse_delete(enum tg_method m, long http, const char *body, struct tg_result *res)
{
	memset(res, 0xA5, sizeof *res);
	tg_parse_reply(m, http, body, strlen(body), SECRET_TOKEN, res);
}

/* ---- tg_parse_reply --------------------------------------------------------------------- */

static void ok_reply_gives_the_message_id(void **state)
{
	struct tg_result res;

	(void)state;
	parse(200, "{\"ok\":true,\"result\":{\"message_id\":4242,\"chat\":{\"id\":1},"
		   "\"date\":1700000000,\"text\":\"Your OTP is 1234\"}}", &res);
	assert_int_equal(res.status, TG_OK);
	assert_int_equal(res.http_status, 200);
	assert_int_equal(res.message_id, 4242);
	assert_int_equal(res.error_code, 0);
}

static void delete_ok_needs_result_true(void **state)
{
	static const char *const unusable[] = {
		"{\"ok\":true}",
		"{\"ok\":true,\"result\":false}",
		"{\"ok\":true,\"result\":\"true\"}",
		"{\"ok\":true,\"result\":1}",
		"{\"ok\":true,\"result\":{\"message_id\":1}}",
	};
	struct tg_result res;
	size_t i;

	(void)state;
	parse_delete(TG_DELETE_MESSAGE, 200, "{\"ok\":true,\"result\":true}", &res);
	assert_int_equal(res.status, TG_OK);
	assert_int_equal(res.message_id, 0);
	parse_delete(TG_DELETE_MESSAGES, 200, "{\"ok\":true,\"result\":true}", &res);
	assert_int_equal(res.status, TG_OK);
	for (i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
		parse_delete(TG_DELETE_MESSAGES, 200, unusable[i], &res);
		assert_int_equal(res.status, TG_BAD_REPLY);
		assert_true(res.description[0] != '\0');
		parse_delete(TG_DELETE_MESSAGE, 200, unusable[i], &res);
		assert_int_equal(res.status, TG_BAD_REPLY);
	}
}

/* sendMessage's success must carry a message id we can delete: a positive integer that every
 * JSON reader holds exactly. Anything else is a 502, never a 200 with a row that deletes
 * nothing. */
static void send_ok_without_a_usable_message_id_is_a_bad_reply(void **state)
{
	static const char *const unusable[] = {
		"{\"ok\":true}",
		"{\"ok\":true,\"result\":true}",
		"{\"ok\":true,\"result\":{}}",
		"{\"ok\":true,\"result\":{\"message_id\":null}}",
		"{\"ok\":true,\"result\":{\"message_id\":0}}",
		"{\"ok\":true,\"result\":{\"message_id\":-1}}",
		"{\"ok\":true,\"result\":{\"message_id\":-9223372036854775808}}",
		"{\"ok\":true,\"result\":{\"message_id\":9007199254740992}}",  /* 2^53 */
		"{\"ok\":true,\"result\":{\"message_id\":9223372036854775807}}",
		"{\"ok\":true,\"result\":{\"message_id\":99999999999999999999}}", /* > int64 */
		"{\"ok\":true,\"result\":{\"message_id\":42.0}}",
		"{\"ok\":true,\"result\":{\"message_id\":4.2e1}}",
		"{\"ok\":true,\"result\":{\"message_id\":\"42\"}}",
		"{\"ok\":true,\"result\":{\"message_id\":true}}",
		"{\"ok\":true,\"result\":{\"message_id\":[42]}}",
		"{\"ok\":true,\"result\":[{\"message_id\":42}]}",
		"{\"ok\":true,\"result\":{\"message_id\":42,\"message_id\":43}}",
	};
	struct tg_result res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
		parse(200, unusable[i], &res);
		if (res.status != TG_BAD_REPLY)
			fail_msg("%s: status %s", unusable[i], tg_status_name(res.status));
		assert_int_equal(res.message_id, 0);
		assert_int_equal(res.http_status, 200);
		assert_true(res.description[0] != '\0');
		assert_clean(res.description);
	}
}

static void send_ok_message_id_bounds(void **state)
{
	struct tg_result res;

	(void)state;
	parse(200, "{\"ok\":true,\"result\":{\"message_id\":1}}", &res);
	assert_int_equal(res.status, TG_OK);
	assert_int_equal(res.message_id, 1);
	parse(200, "{\"ok\":true,\"result\":{\"message_id\":9007199254740991}}", &res);
	assert_int_equal(res.status, TG_OK);
	assert_true(res.message_id == TG_MESSAGE_ID_MAX);
}

static void chat_not_found_is_refused_with_code_and_description(void **state)
{
	struct tg_result res;

	(void)state;
	parse(400, "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}",
	      &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_int_equal(res.http_status, 400);
	assert_int_equal(res.error_code, 400);
	assert_string_equal(res.description, "Bad Request: chat not found");
}

static void forbidden_is_refused(void **state)
{
	struct tg_result res;

	(void)state;
	parse(403, "{\"ok\":false,\"error_code\":403,"
		   "\"description\":\"Forbidden: bot was blocked by the user\"}", &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_int_equal(res.error_code, 403);
	assert_string_equal(res.description, "Forbidden: bot was blocked by the user");
}

static void message_to_delete_not_found_is_not_found(void **state)
{
	const char *body = "{\"ok\":false,\"error_code\":400,"
			   "\"description\":\"Bad Request: message to delete not found\"}";
	struct tg_result res;

	(void)state;
	parse_delete(TG_DELETE_MESSAGE, 400, body, &res);
	assert_int_equal(res.status, TG_NOT_FOUND);
	assert_int_equal(res.error_code, 400);
	parse_delete(TG_DELETE_MESSAGES, 400, body, &res);
	assert_int_equal(res.status, TG_NOT_FOUND);
	/* to a send it means nothing: refused */
	parse(400, body, &res);
	assert_int_equal(res.status, TG_REFUSED);
}

/* A description is decided on before it is cleaned: a word of it masked as a piece of the token
 * does not turn "not found" (done) into a refusal. */
static void not_found_is_read_before_the_description_is_cleaned(void **state)
{
	const char *body = "{\"ok\":false,\"error_code\":400,"
			   "\"description\":\"Bad Request: message to delete not found\"}";
	struct tg_result res;

	(void)state;
	memset(&res, 0, sizeof res);
	tg_parse_reply(TG_DELETE_MESSAGE, 400, body, strlen(body), "1:xmessagex", &res);
	assert_int_equal(res.status, TG_NOT_FOUND);
	assert_null(strstr(res.description, "message"));
}

static void flood_control_with_retry_after(void **state)
{
	struct tg_result res;

	(void)state;
	parse(429, "{\"ok\":false,\"error_code\":429,"
		   "\"description\":\"Too Many Requests: retry after 7\","
		   "\"parameters\":{\"retry_after\":7}}", &res);
	assert_int_equal(res.status, TG_RETRY_AFTER);
	assert_int_equal(res.error_code, 429);
	assert_int_equal(res.retry_after_s, 7);
}

/* retry_after comes from the network: a hostile or broken upstream sends anything. It must
 * arrive as a number in [1, TG_RETRY_AFTER_MAX] whatever was sent, never wrapped. */
static void retry_after_is_range_checked_and_saturates(void **state)
{
	static const struct {
		const char *value;
		int want;
	} cases[] = {
		{ "1", 1 },
		{ "3600", 3600 },
		{ "2147483", TG_RETRY_AFTER_MAX },
		{ "1000000000", TG_RETRY_AFTER_MAX },          /* 10^9 */
		{ "2147483647", TG_RETRY_AFTER_MAX },
		{ "2147483648", TG_RETRY_AFTER_MAX },          /* 2^31 */
		{ "4294967297", TG_RETRY_AFTER_MAX },          /* 2^32 + 1: 1 if cut to int */
		{ "9223372036854775807", TG_RETRY_AFTER_MAX },
		{ "0", 1 },
		{ "-5", 1 },
		{ "-2147483649", 1 },
		{ "1.5", 2 },
		{ "0.2", 1 },
		{ "1e300", TG_RETRY_AFTER_MAX },
		{ "-1e300", 1 },
		{ "\"7\"", 1 },
		{ "null", 1 },
		{ "[7]", 1 },
	};
	char body[256];
	struct tg_result res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(body, sizeof body,
			 "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\","
			 "\"parameters\":{\"retry_after\":%s}}", cases[i].value);
		parse(429, body, &res);
		assert_int_equal(res.status, TG_RETRY_AFTER);
		if (res.retry_after_s != cases[i].want)
			fail_msg("retry_after %s gave %d, want %d", cases[i].value,
				 res.retry_after_s, cases[i].want);
	}
	/* a retry_after beyond int64 makes the reply unreadable: a 429 with an HTTP 429 still is
	 * no success, and the caller does not read a pause from it */
	parse(429, "{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":"
		   "99999999999999999999}}", &res);
	assert_int_not_equal(res.status, TG_OK);
}

/* error_code is an HTTP error status or nothing: an absurd one falls back to the reply's HTTP
 * status, never cut to an int that means something else. */
static void error_code_is_range_checked(void **state)
{
	struct tg_result res;

	(void)state;
	parse(400, "{\"ok\":false,\"error_code\":99999999999,\"description\":\"Bad Request: x\"}",
	      &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_int_equal(res.error_code, 400);
	/* 99999999999 cut to 32 bits is 1215752191; 4294967725 cut is 429 */
	parse(400, "{\"ok\":false,\"error_code\":4294967725,\"description\":\"x\"}", &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_int_equal(res.error_code, 400);
	parse(200, "{\"ok\":false,\"error_code\":99999999999,\"description\":\"x\"}", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	assert_int_equal(res.error_code, 0);
	parse(403, "{\"ok\":false,\"error_code\":-403,\"description\":\"x\"}", &res);
	assert_int_equal(res.error_code, 403);
	parse(403, "{\"ok\":false,\"error_code\":\"429\",\"description\":\"x\"}", &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_int_equal(res.error_code, 403);
	parse(400, "{\"ok\":false,\"error_code\":399}", &res);
	assert_int_equal(res.error_code, 400);
	parse(400, "{\"ok\":false,\"error_code\":600}", &res);
	assert_int_equal(res.error_code, 400);
	parse(502, "{\"ok\":false,\"error_code\":1e3}", &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
	assert_int_equal(res.error_code, 502);
	assert_string_equal(res.description, "no description");
}

static void flood_control_without_parameters_waits_one_second(void **state)
{
	struct tg_result res;

	(void)state;
	parse(429, "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\"}", &res);
	assert_int_equal(res.status, TG_RETRY_AFTER);
	assert_int_equal(res.retry_after_s, 1);
}

static void html_502_is_server_error(void **state)
{
	struct tg_result res;

	(void)state;
	parse(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
	      &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
	assert_int_equal(res.http_status, 502);
	assert_true(res.description[0] != '\0');
}

static void json_500_is_server_error(void **state)
{
	struct tg_result res;

	(void)state;
	parse(500, "{\"ok\":false,\"error_code\":500,\"description\":\"Internal Server Error\"}",
	      &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
	assert_int_equal(res.error_code, 500);
}

/* Below 500 an unreadable answer is not an outage to wait out: it is a reply we cannot use. */
static void garbage_is_a_bad_reply(void **state)
{
	struct tg_result res;

	(void)state;
	parse(200, "this is not json", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(200, "", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(200, "{\"result\":{\"message_id\":1}}", &res); /* no "ok" */
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(200, "{\"ok\":\"true\",\"result\":{\"message_id\":1}}", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(200, "[true]", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(200, "{\"ok\":true,\"ok\":false}", &res); /* duplicate keys */
	assert_int_equal(res.status, TG_BAD_REPLY);
	parse(400, "<html>Bad Request</html>", &res);
	assert_int_equal(res.status, TG_BAD_REPLY);
	assert_int_equal(res.http_status, 400);
	assert_clean(res.description);
}

static void reply_is_read_only_up_to_len(void **state)
{
	const char body[] = "{\"ok\":true,\"result\":{\"message_id\":9}}trailing junk";
	struct tg_result res;

	(void)state;
	memset(&res, 0, sizeof res);
	tg_parse_reply(TG_SEND_MESSAGE, 200, body, strlen(body) - strlen("trailing junk"), NULL,
		       &res);
	assert_int_equal(res.status, TG_OK);
	assert_int_equal(res.message_id, 9);
}

/* ---- tg_json_quote ---------------------------------------------------------------------- */

static void quote_escapes_quote_and_backslash(void **state)
{
	char buf[64];
	size_t len = 0;

	(void)state;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "a\"b\\c"), 0);
	assert_string_equal(buf, "\"a\\\"b\\\\c\"");
	assert_int_equal(len, strlen(buf));
}

static void quote_escapes_newline_and_control_chars(void **state)
{
	char buf[64];
	size_t len = 0;

	(void)state;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "a\nb\tc\x01\x1f"), 0);
	assert_string_equal(buf, "\"a\\nb\\u0009c\\u0001\\u001f\"");
}

static void quote_passes_utf8_through(void **state)
{
	char buf[64];
	size_t len = 0;

	(void)state;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "é 🔐 ⏱"), 0);
	assert_string_equal(buf, "\"é 🔐 ⏱\"");
}

static void quote_appends_at_len(void **state)
{
	char buf[64] = "{\"chat_id\":";
	size_t len = strlen(buf);

	(void)state;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "-100123"), 0);
	assert_string_equal(buf, "{\"chat_id\":\"-100123\"");
	assert_int_equal(len, strlen(buf));
}

static void quote_overflow_returns_minus_one_and_keeps_len(void **state)
{
	char buf[8];
	size_t len = 0;

	(void)state;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "0123456789"), -1);
	assert_int_equal(len, 0);
	/* an escape that does not fit */
	len = 0;
	assert_int_equal(tg_json_quote(buf, sizeof buf, &len, "ab\x01"), -1);
	assert_int_equal(len, 0);
}

static void quote_exact_fit(void **state)
{
	char buf[8];
	size_t len = 0;

	(void)state;
	/* "ab" with quotes is 4 bytes plus the NUL */
	assert_int_equal(tg_json_quote(buf, 5, &len, "ab"), 0);
	assert_string_equal(buf, "\"ab\"");
	assert_int_equal(len, 4);
	len = 0;
	assert_int_equal(tg_json_quote(buf, 4, &len, "ab"), -1);
}

/* ---- tg_status_name --------------------------------------------------------------------- */

static void status_names(void **state)
{
	(void)state;
	assert_string_equal(tg_status_name(TG_OK), "ok");
	assert_string_equal(tg_status_name(TG_NOT_FOUND), "not_found");
	assert_string_equal(tg_status_name(TG_REFUSED), "refused");
	assert_string_equal(tg_status_name(TG_RETRY_AFTER), "retry_after");
	assert_string_equal(tg_status_name(TG_SERVER_ERROR), "server_error");
	assert_string_equal(tg_status_name(TG_TIMEOUT), "timeout");
	assert_string_equal(tg_status_name(TG_UNREACHABLE), "unreachable");
	assert_string_equal(tg_status_name(TG_NO_ANSWER), "no_answer");
	assert_string_equal(tg_status_name(TG_BAD_REPLY), "bad_reply");
}

/* ---- the description, cleaned --------------------------------------------------------- */

static void clean(const char *src, const char *token, char *out, size_t cap)
{
	tg_clean_text(out, cap, src, strlen(src), token);
}

static void description_with_the_token_is_masked(void **state)
{
	char body[512];
	struct tg_result res;

	(void)state;
	snprintf(body, sizeof body,
		 "{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized: "
		 "https://api.telegram.org/bot%s/sendMessage is invalid\"}", SECRET_TOKEN);
	parse(401, body, &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_clean(res.description);
	assert_string_equal(res.description,
			    "Unauthorized: https://api.telegram.org/bot123456:***/sendMessage is invalid");
}

static void pieces_of_the_secret_are_masked(void **state)
{
	char out[256];

	(void)state;
	/* the secret alone, a piece of it, pieces run together, a piece at the very end */
	clean("token SECRETTOKENabc here", SECRET_TOKEN, out, sizeof out);
	assert_string_equal(out, "token *** here");
	clean("starts CRETTOK", SECRET_TOKEN, out, sizeof out);
	assert_string_equal(out, "starts ***");
	clean("SECR-ETTO-KENa-bc", SECRET_TOKEN, out, sizeof out);
	assert_string_equal(out, "***-***-***-bc");
	clean("SECRETSECRET", SECRET_TOKEN, out, sizeof out);
	assert_clean(out);
	/* 3 bytes of it are not a secret: ordinary words survive */
	clean("SEC and abc", SECRET_TOKEN, out, sizeof out);
	assert_string_equal(out, "SEC and abc");
	/* the bot's id (the part before ':') is public */
	clean("bot 123456 said no", SECRET_TOKEN, out, sizeof out);
	assert_string_equal(out, "bot 123456 said no");
	/* no token: nothing masked */
	clean("SECRETTOKENabc", NULL, out, sizeof out);
	assert_string_equal(out, "SECRETTOKENabc");
}

static void control_characters_become_spaces(void **state)
{
	char out[256];

	(void)state;
	clean("a\nb\rc\td\x1b[31me\x7f" "f", NULL, out, sizeof out);
	assert_string_equal(out, "a b c d [31me f");
	/* C1 (U+0085), line separator (U+2028), right-to-left override (U+202E), isolate U+2066 */
	clean("x\xc2\x85y\xe2\x80\xa8z\xe2\x80\xae" "w\xe2\x81\xa6v", NULL, out, sizeof out);
	assert_string_equal(out, "x y z w v");
	/* ordinary non-ASCII text stays */
	clean("caf\xc3\xa9 \xf0\x9f\x94\x90", NULL, out, sizeof out);
	assert_string_equal(out, "caf\xc3\xa9 \xf0\x9f\x94\x90");
}

static void invalid_utf8_becomes_question_marks(void **state)
{
	char out[256];

	(void)state;
	clean("a\xff" "b\xc3" "c\xed\xa0\x80" "d\xc0\xaf" "e\xf4\x90\x80\x80", NULL, out,
	      sizeof out);
	assert_clean(out);
	assert_string_equal(out, "a?b?c???d??e????");
}

static void ten_kilobyte_description_is_cut(void **state)
{
	static char body[12 * 1024];
	struct tg_result res;
	size_t n;
	int k;

	(void)state;
	n = (size_t)snprintf(body, sizeof body,
			     "{\"ok\":false,\"error_code\":400,\"description\":\"");
	for (k = 0; k < 10 * 1024 - 40; k++)
		body[n++] = (char)('a' + k % 26);
	n += (size_t)snprintf(body + n, sizeof body - n, " %s\"}", SECRET_TOKEN);
	parse(400, body, &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_clean(res.description);
	assert_int_equal(strlen(res.description), TG_DESCRIPTION_MAX + 3);
	assert_memory_equal(res.description + TG_DESCRIPTION_MAX, "\xe2\x80\xa6", 3);
	assert_memory_equal(res.description, "abcdefghij", 10);
}

static void clean_respects_a_small_buffer(void **state)
{
	char out[8];

	(void)state;
	clean("0123456789", NULL, out, sizeof out);
	assert_string_equal(out, "0123\xe2\x80\xa6");
	clean("\xc3\xa9\xc3\xa9\xc3\xa9", NULL, out, sizeof out);
	assert_string_equal(out, "\xc3\xa9\xc3\xa9\xe2\x80\xa6");
	clean("", NULL, out, sizeof out);
	assert_string_equal(out, "");
}

static void long_multibyte_description_is_cut_on_a_character_boundary(void **state)
{
	char body[1024];
	struct tg_result res;
	json_t *j;
	size_t n = 0;
	int k;

	(void)state;
	n += (size_t)snprintf(body, sizeof body, "{\"ok\":false,\"error_code\":400,\"description\":\"");
	for (k = 0; k < 200; k++)
		n += (size_t)snprintf(body + n, sizeof body - n, "\xc3\xa9"); /* é */
	snprintf(body + n, sizeof body - n, "\"}");
	memset(&res, 0, sizeof res);
	tg_parse_reply(TG_SEND_MESSAGE, 400, body, strlen(body), NULL, &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_true(strlen(res.description) % 2 == 1); /* whole é's, then "…" */
	j = json_string(res.description); /* NULL if not valid UTF-8 */
	assert_non_null(j);
	json_decref(j);
}

/* ---- request bodies -------------------------------------------------------------------- */

static void send_body_carries_the_fields_in_order(void **state)
{
	char buf[256];
	size_t len = 99;

	(void)state;
	assert_int_equal(tg_request_send_message(buf, sizeof buf, &len, "-100123", "<b>\"1234\"</b>",
						 0), 0);
	assert_string_equal(buf, "{\"chat_id\":\"-100123\",\"text\":\"<b>\\\"1234\\\"</b>\","
				 "\"parse_mode\":\"HTML\",\"protect_content\":true}");
	assert_int_equal(len, strlen(buf));
	assert_int_equal(tg_request_send_message(buf, sizeof buf, &len, "@chan", "x", 1), 0);
	assert_string_equal(buf, "{\"chat_id\":\"@chan\",\"text\":\"x\",\"parse_mode\":\"HTML\","
				 "\"protect_content\":true,\"allow_paid_broadcast\":true}");
	assert_int_equal(len, strlen(buf));
}

static void send_body_that_does_not_fit_fails(void **state)
{
	char buf[96];
	size_t len;

	(void)state;
	/* 72 bytes and the NUL without paid broadcast: fits in 96; with it, 101 bytes do not */
	assert_int_equal(tg_request_send_message(buf, sizeof buf, &len, "1", "1234", 0), 0);
	assert_int_equal(len, 72);
	assert_int_equal(tg_request_send_message(buf, sizeof buf, &len, "1", "1234", 1), -1);
	assert_int_equal(tg_request_send_message(buf, 72, &len, "1", "1234", 0), -1);
	assert_int_equal(tg_request_send_message(buf, 73, &len, "1", "1234", 0), 0);
}

static void delete_body_for_one_id_and_for_many(void **state)
{
	long long ids[TG_DELETE_MESSAGES_MAX + 1];
	char buf[256 + 21 * TG_DELETE_MESSAGES_MAX];
	size_t len;
	int i;

	(void)state;
	for (i = 0; i <= TG_DELETE_MESSAGES_MAX; i++)
		ids[i] = TG_MESSAGE_ID_MAX - i;
	ids[0] = 42;
	assert_int_equal(tg_request_delete(buf, sizeof buf, &len, "-100", ids, 1), 0);
	assert_string_equal(buf, "{\"chat_id\":\"-100\",\"message_id\":42}");
	assert_int_equal(len, strlen(buf));
	assert_int_equal(tg_request_delete(buf, sizeof buf, &len, "-100", ids, 3), 0);
	assert_string_equal(buf, "{\"chat_id\":\"-100\",\"message_ids\":[42,9007199254740990,"
				 "9007199254740989]}");
	assert_int_equal(tg_request_delete(buf, sizeof buf, &len, "-100", ids,
					   TG_DELETE_MESSAGES_MAX), 0);
	assert_int_equal(len, strlen(buf));
	assert_non_null(strstr(buf, ",9007199254740892]}"));
	assert_int_equal(tg_request_delete(buf, sizeof buf, &len, "-100", ids, 0), -1);
	assert_int_equal(tg_request_delete(buf, sizeof buf, &len, "-100", ids,
					   TG_DELETE_MESSAGES_MAX + 1), -1);
	assert_int_equal(tg_request_delete(buf, 30, &len, "-100", ids, 1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ok_reply_gives_the_message_id),
		cmocka_unit_test(delete_ok_needs_result_true),
		cmocka_unit_test(send_ok_without_a_usable_message_id_is_a_bad_reply),
		cmocka_unit_test(send_ok_message_id_bounds),
		cmocka_unit_test(retry_after_is_range_checked_and_saturates),
		cmocka_unit_test(error_code_is_range_checked),
		cmocka_unit_test(not_found_is_read_before_the_description_is_cleaned),
		cmocka_unit_test(description_with_the_token_is_masked),
		cmocka_unit_test(pieces_of_the_secret_are_masked),
		cmocka_unit_test(control_characters_become_spaces),
		cmocka_unit_test(invalid_utf8_becomes_question_marks),
		cmocka_unit_test(ten_kilobyte_description_is_cut),
		cmocka_unit_test(clean_respects_a_small_buffer),
		cmocka_unit_test(chat_not_found_is_refused_with_code_and_description),
		cmocka_unit_test(forbidden_is_refused),
		cmocka_unit_test(message_to_delete_not_found_is_not_found),
		cmocka_unit_test(flood_control_with_retry_after),
		cmocka_unit_test(flood_control_without_parameters_waits_one_second),
		cmocka_unit_test(html_502_is_server_error),
		cmocka_unit_test(json_500_is_server_error),
		cmocka_unit_test(garbage_is_a_bad_reply),
		cmocka_unit_test(reply_is_read_only_up_to_len),
		cmocka_unit_test(quote_escapes_quote_and_backslash),
		cmocka_unit_test(quote_escapes_newline_and_control_chars),
		cmocka_unit_test(quote_passes_utf8_through),
		cmocka_unit_test(quote_appends_at_len),
		cmocka_unit_test(quote_overflow_returns_minus_one_and_keeps_len),
		cmocka_unit_test(quote_exact_fit),
		cmocka_unit_test(status_names),
		cmocka_unit_test(long_multibyte_description_is_cut_on_a_character_boundary),
		cmocka_unit_test(send_body_carries_the_fields_in_order),
		cmocka_unit_test(send_body_that_does_not_fit_fails),
		cmocka_unit_test(delete_body_for_one_id_and_for_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
