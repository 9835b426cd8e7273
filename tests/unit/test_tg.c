/* test_tg.c — lib/tg.h: reading Bot API replies, JSON quoting, status names, and a client that
 * cannot connect (without leaking the token into its description). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app.h"
#include "store.h"
#include "tg.h"

#define SECRET_TOKEN "123456:SECRETTOKENabc"
#define TOKEN_SECRET_PART "SECRETTOKENabc"

static void parse(long http, const char *body, struct tg_result *res)
{
	memset(res, 0, sizeof *res);
	tg_parse_reply(http, body, strlen(body), res);
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

static void ok_reply_with_result_true(void **state)
{
	struct tg_result res;

	(void)state;
	parse(200, "{\"ok\":true,\"result\":true}", &res);
	assert_int_equal(res.status, TG_OK);
	assert_int_equal(res.message_id, 0);
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
	struct tg_result res;

	(void)state;
	parse(400, "{\"ok\":false,\"error_code\":400,"
		   "\"description\":\"Bad Request: message to delete not found\"}", &res);
	assert_int_equal(res.status, TG_NOT_FOUND);
	assert_int_equal(res.error_code, 400);
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

static void garbage_is_server_error(void **state)
{
	struct tg_result res;

	(void)state;
	parse(200, "this is not json", &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
	parse(200, "", &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
	parse(200, "{\"result\":{\"message_id\":1}}", &res); /* no "ok" */
	assert_int_equal(res.status, TG_SERVER_ERROR);
	parse(200, "[true]", &res);
	assert_int_equal(res.status, TG_SERVER_ERROR);
}

static void reply_is_read_only_up_to_len(void **state)
{
	const char body[] = "{\"ok\":true,\"result\":{\"message_id\":9}}trailing junk";
	struct tg_result res;

	(void)state;
	memset(&res, 0, sizeof res);
	tg_parse_reply(200, body, strlen(body) - strlen("trailing junk"), &res);
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
}

/* ---- a client that cannot connect ------------------------------------------------------- */

/* A local TCP port that nothing listens on: bound, read, closed. */
static int closed_local_port(void)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int group_setup(void **state)
{
	static const char *const proxies[] = { "http_proxy", "HTTP_PROXY", "https_proxy",
					       "HTTPS_PROXY", "all_proxy", "ALL_PROXY" };
	size_t i;

	(void)state;
	/* the unreachable test must talk to 127.0.0.1 itself, not to a proxy */
	for (i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
		unsetenv(proxies[i]);
	return tg_global_init();
}

static int group_teardown(void **state)
{
	(void)state;
	tg_global_cleanup();
	return 0;
}

static void closed_port_is_unreachable_and_the_token_stays_secret(void **state)
{
	char base[64];
	struct tg *tg;
	struct tg_result res;

	(void)state;
	snprintf(base, sizeof base, "http://127.0.0.1:%d", closed_local_port());
	tg = tg_new(base, SECRET_TOKEN, 2000);
	assert_non_null(tg);

	assert_int_equal(tg_send_message(tg, "12345", "Your OTP is <code>1234</code>", &res),
			 TG_UNREACHABLE);
	assert_int_equal(res.status, TG_UNREACHABLE);
	assert_int_equal(res.http_status, 0);
	assert_true(res.description[0] != '\0');
	assert_null(strstr(res.description, TOKEN_SECRET_PART));
	assert_null(strstr(res.description, "1234</code>"));

	assert_int_equal(tg_delete_message(tg, "12345", 77, &res), TG_UNREACHABLE);
	assert_int_equal(res.status, TG_UNREACHABLE);
	assert_true(res.description[0] != '\0');
	assert_null(strstr(res.description, TOKEN_SECRET_PART));
	tg_free(tg);
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
	tg_parse_reply(400, body, strlen(body), &res);
	assert_int_equal(res.status, TG_REFUSED);
	assert_true(strlen(res.description) % 2 == 0);
	j = json_string(res.description); /* NULL if not valid UTF-8 */
	assert_non_null(j);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ok_reply_gives_the_message_id),
		cmocka_unit_test(ok_reply_with_result_true),
		cmocka_unit_test(chat_not_found_is_refused_with_code_and_description),
		cmocka_unit_test(forbidden_is_refused),
		cmocka_unit_test(message_to_delete_not_found_is_not_found),
		cmocka_unit_test(flood_control_with_retry_after),
		cmocka_unit_test(flood_control_without_parameters_waits_one_second),
		cmocka_unit_test(html_502_is_server_error),
		cmocka_unit_test(json_500_is_server_error),
		cmocka_unit_test(garbage_is_server_error),
		cmocka_unit_test(reply_is_read_only_up_to_len),
		cmocka_unit_test(quote_escapes_quote_and_backslash),
		cmocka_unit_test(quote_escapes_newline_and_control_chars),
		cmocka_unit_test(quote_passes_utf8_through),
		cmocka_unit_test(quote_appends_at_len),
		cmocka_unit_test(quote_overflow_returns_minus_one_and_keeps_len),
		cmocka_unit_test(quote_exact_fit),
		cmocka_unit_test(status_names),
		cmocka_unit_test(long_multibyte_description_is_cut_on_a_character_boundary),
		cmocka_unit_test(closed_port_is_unreachable_and_the_token_stays_secret),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
