/* test_log.c — lib/log.h: chat id masking, level names, and the JSON lines themselves. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "app.h"
#include "log.h"
#include "secmem.h"
#include "store.h"

/* ---- log_mask_chat_id ------------------------------------------------------------------- */

static void expect_mask(const char *chat_id, const char *masked)
{
	char out[LOG_MASKED_LEN];

	memset(out, 'Z', sizeof out);
	log_mask_chat_id(chat_id, out);
	assert_string_equal(out, masked);
}

static void mask_numeric_id_keeps_last_three(void **state)
{
	(void)state;
	expect_mask("123456789", "******789");
}

static void mask_channel_id_keeps_minus_100_and_last_three(void **state)
{
	(void)state;
	expect_mask("-1001234567890", "-100*******890");
}

static void mask_negative_group_id_keeps_minus_and_last_three(void **state)
{
	(void)state;
	expect_mask("-987654", "-***654");
}

static void mask_username_keeps_at_and_last_three(void **state)
{
	(void)state;
	expect_mask("@channelname", "@********ame");
}

static void mask_short_ids_are_not_lengthened(void **state)
{
	(void)state;
	expect_mask("", "");
	expect_mask("123", "123");
	expect_mask("1234", "*234");
}

static void mask_never_contains_the_hidden_digits(void **state)
{
	char out[LOG_MASKED_LEN];

	(void)state;
	log_mask_chat_id("5550001234", out);
	assert_null(strstr(out, "555"));
	assert_null(strstr(out, "0001"));
	assert_int_equal(strlen(out), 10);
}

/* ---- log_level_parse -------------------------------------------------------------------- */

static void level_names_parse_in_any_case(void **state)
{
	enum log_level lv;

	(void)state;
	assert_int_equal(log_level_parse("DEBUG", &lv), 0);
	assert_int_equal(lv, LOG_DEBUG);
	assert_int_equal(log_level_parse("info", &lv), 0);
	assert_int_equal(lv, LOG_INFO);
	assert_int_equal(log_level_parse("Warning", &lv), 0);
	assert_int_equal(lv, LOG_WARNING);
	assert_int_equal(log_level_parse("warn", &lv), 0);
	assert_int_equal(lv, LOG_WARNING);
	assert_int_equal(log_level_parse("WARN", &lv), 0);
	assert_int_equal(lv, LOG_WARNING);
	assert_int_equal(log_level_parse("eRRoR", &lv), 0);
	assert_int_equal(lv, LOG_ERROR);
}

static void unknown_level_names_are_rejected(void **state)
{
	enum log_level lv = LOG_ERROR;

	(void)state;
	assert_int_equal(log_level_parse("TRACE", &lv), -1);
	assert_int_equal(log_level_parse("", &lv), -1);
	assert_int_equal(log_level_parse("INFO ", &lv), -1);
	assert_int_equal(log_level_parse("CRITICAL", &lv), -1);
	assert_int_equal(lv, LOG_ERROR);
}

/* ---- log_json / log_msg ----------------------------------------------------------------- */

struct pipe_fixture {
	int rfd, wfd;
};

static int pipe_setup(void **state)
{
	struct pipe_fixture *p = calloc(1, sizeof *p);
	int fds[2];

	if (p == NULL || pipe(fds) != 0) {
		free(p);
		return -1;
	}
	p->rfd = fds[0];
	p->wfd = fds[1];
	fcntl(p->rfd, F_SETFL, O_NONBLOCK);
	log_set_fd(p->wfd);
	*state = p;
	return 0;
}

static int pipe_teardown(void **state)
{
	struct pipe_fixture *p = *state;

	log_set_fd(2);
	log_init("otp", LOG_INFO);
	close(p->rfd);
	close(p->wfd);
	free(p);
	return 0;
}

/* Reads everything written so far (the pipe is non-blocking). */
static size_t drain(const struct pipe_fixture *p, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < cap && (n = read(p->rfd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return len;
}

/* Reads one line, checks it is one JSON object ending in '\n', returns it parsed. */
static json_t *read_one_line(const struct pipe_fixture *p)
{
	char buf[8192];
	size_t len = drain(p, buf, sizeof buf);
	json_error_t jerr;
	json_t *line;

	assert_true(len > 0);
	assert_int_equal(buf[len - 1], '\n');
	assert_ptr_equal(strchr(buf, '\n'), buf + len - 1); /* exactly one line */
	line = json_loadb(buf, len - 1, 0, &jerr);
	if (line == NULL)
		print_error("not JSON (%s): %s\n", jerr.text, buf);
	assert_non_null(line);
	assert_true(json_is_object(line));
	return line;
}

static const char *str_field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static void log_json_writes_one_json_line_with_the_fields(void **state)
{
	struct pipe_fixture *p = *state;
	json_t *line;
	const char *ts;

	log_init("unit-test", LOG_DEBUG);
	log_json(LOG_WARNING, "deletion failed",
		 json_pack("{s:s, s:i}", "chat_id", "******789", "attempts", 3));
	line = read_one_line(p);

	ts = str_field(line, "timestamp");
	/* 2025-10-28T12:00:00.123Z */
	assert_int_equal(strlen(ts), 24);
	assert_int_equal(ts[4], '-');
	assert_int_equal(ts[10], 'T');
	assert_int_equal(ts[19], '.');
	assert_int_equal(ts[23], 'Z');
	assert_string_equal(str_field(line, "level"), "WARNING");
	assert_string_equal(str_field(line, "program"), "unit-test");
	assert_string_equal(str_field(line, "message"), "deletion failed");
	assert_true(json_is_integer(json_object_get(line, "pid")));
	assert_int_equal(json_integer_value(json_object_get(line, "pid")), getpid());
	assert_string_equal(str_field(line, "chat_id"), "******789");
	assert_int_equal(json_integer_value(json_object_get(line, "attempts")), 3);
	json_decref(line);
}

static void log_json_without_fields(void **state)
{
	struct pipe_fixture *p = *state;
	json_t *line;

	log_init("unit-test", LOG_INFO);
	log_json(LOG_ERROR, "plain", NULL);
	line = read_one_line(p);
	assert_string_equal(str_field(line, "level"), "ERROR");
	assert_string_equal(str_field(line, "message"), "plain");
	json_decref(line);
}

static void log_message_with_newlines_and_quotes_stays_one_line(void **state)
{
	struct pipe_fixture *p = *state;
	json_t *line;

	log_init("unit-test", LOG_INFO);
	log_json(LOG_INFO, "two\nlines \"quoted\" \\ end",
		 json_pack("{s:s}", "error", "curl: (7)\nFailed"));
	line = read_one_line(p);
	assert_string_equal(str_field(line, "message"), "two\nlines \"quoted\" \\ end");
	assert_string_equal(str_field(line, "error"), "curl: (7)\nFailed");
	json_decref(line);
}

static void log_msg_formats_like_printf(void **state)
{
	struct pipe_fixture *p = *state;
	json_t *line;

	log_init("fmt-test", LOG_DEBUG);
	log_msg(LOG_DEBUG, "opened %s after %d tries", "pending.db", 3);
	line = read_one_line(p);
	assert_string_equal(str_field(line, "level"), "DEBUG");
	assert_string_equal(str_field(line, "program"), "fmt-test");
	assert_string_equal(str_field(line, "message"), "opened pending.db after 3 tries");
	json_decref(line);
}

static void below_the_minimum_level_nothing_is_written(void **state)
{
	struct pipe_fixture *p = *state;
	char buf[256];
	json_t *line;

	log_init("unit-test", LOG_WARNING);
	log_json(LOG_INFO, "quiet", json_pack("{s:s}", "k", "v")); /* fields freed all the same */
	log_json(LOG_DEBUG, "quieter", NULL);
	log_msg(LOG_INFO, "also quiet %d", 1);
	assert_int_equal(drain(p, buf, sizeof buf), 0);
	assert_int_equal(errno, EAGAIN);

	log_msg(LOG_WARNING, "loud");
	line = read_one_line(p);
	assert_string_equal(str_field(line, "message"), "loud");
	json_decref(line);
}

/* secmem.h: both programs install the wiping jansson allocator at start, then log. A log line
 * must then be written, and the process must survive it. Runs in a child: the allocator cannot
 * be uninstalled, and a crash must not take the test runner down. */
static void log_json_works_with_the_wiping_json_allocator(void **state)
{
	struct pipe_fixture *p = *state;
	pid_t pid;
	int status = 0;
	char buf[1024];

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		secmem_install_json_allocator();
		log_init("otp-fcgi", LOG_INFO);
		log_msg(LOG_INFO, "first line");
		log_json(LOG_INFO, "second line", json_pack("{s:i}", "n", 2));
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	drain(p, buf, sizeof buf);
	if (!WIFEXITED(status))
		print_error("the child died of signal %d after writing: %s\n",
			    WIFSIGNALED(status) ? WTERMSIG(status) : -1, buf);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_non_null(strstr(buf, "\"first line\""));
	assert_non_null(strstr(buf, "\"second line\""));
}

static void printable_replaces_control_and_non_ascii_bytes_and_cuts(void **state)
{
	char out[8];

	(void)state;
	log_printable("/a\x01" "b\xff" "c", out, sizeof out);
	assert_string_equal(out, "/a?b?c");
	log_printable("/0123456789", out, sizeof out);
	assert_string_equal(out, "/012345");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, pipe_setup, pipe_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(printable_replaces_control_and_non_ascii_bytes_and_cuts),
		cmocka_unit_test(mask_numeric_id_keeps_last_three),
		cmocka_unit_test(mask_channel_id_keeps_minus_100_and_last_three),
		cmocka_unit_test(mask_negative_group_id_keeps_minus_and_last_three),
		cmocka_unit_test(mask_username_keeps_at_and_last_three),
		cmocka_unit_test(mask_short_ids_are_not_lengthened),
		cmocka_unit_test(mask_never_contains_the_hidden_digits),
		cmocka_unit_test(level_names_parse_in_any_case),
		cmocka_unit_test(unknown_level_names_are_rejected),
		T(log_json_writes_one_json_line_with_the_fields),
		T(log_json_without_fields),
		T(log_message_with_newlines_and_quotes_stays_one_line),
		T(log_msg_formats_like_printf),
		T(below_the_minimum_level_nothing_is_written),
		T(log_json_works_with_the_wiping_json_allocator),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
