/* test_cfg.c — lib/cfg.h: .env lines, and cfg_load() under a controlled environment. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "cfg.h"
#include "env_file.h"
#include "store.h"
#include "tmpdir.h"

/* Every name lib/cfg.c reads. */
static const char *const SETTINGS[] = {
	"DEFAULT_EXPIRE_SECONDS", "DELETER_CONCURRENCY", "DELETER_HEARTBEAT_STALE_SECONDS",
	"DELETER_POLL_MS", "HOST", "LOG_LEVEL", "MAX_EXPIRE_SECONDS", "MESSAGE_TEMPLATE",
	"MIN_EXPIRE_SECONDS", "OTP_DB_PATH", "OTP_ENV_FILE", "OTP_FCGI_THREADS", "OTP_SANDBOX",
	"PORT", "RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_USER", "RATE_LIMIT_WINDOW_HOURS",
	"RATE_LIMIT_WINDOW_SECONDS", "RUNTIME_DIRECTORY", "TELEGRAM_API_BASE",
	"TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN_FILE", "TELEGRAM_TIMEOUT_SECONDS",
	"TELEGRAM_MAX_SENDS_PER_SECOND", "TELEGRAM_SEND_WAIT_MS", "TELEGRAM_MAX_PAUSE_SECONDS",
	"TELEGRAM_PAID_BROADCAST", "OTP_STORE", "OTP_REDIS_PASSWORD_FILE", "OTP_REDIS_PREFIX",
	"OTP_HOST_NAME", "DELETER_STOP_TIMEOUT_SECONDS", "API_KEY", "OTP_ALLOW_CORE_DUMPS",
	"TELEGRAM_CA_FILE",
	"OTP_API_KEYS", "OTP_API_KEYS_FILE", "OTP_KEY_LIMIT_PER_MINUTE", "OTP_BODY_TIMEOUT_SECONDS",
};

#define GOOD_TOKEN "123456:ABCdef_ghi-JKL"

struct fixture {
	char dir[64];
	char db_path[128];
	struct cfg cfg;
	char err[512];
};

static void clear_settings(void)
{
	size_t i;

	for (i = 0; i < sizeof SETTINGS / sizeof SETTINGS[0]; i++)
		unsetenv(SETTINGS[i]);
}


static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/otp-cfg-test-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->db_path, sizeof f->db_path, "%s/pending.db", f->dir);
	clear_settings();
	setenv("OTP_DB_PATH", f->db_path, 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	cfg_free(&f->cfg);
	clear_settings();
	remove_dir(f->dir);
	free(f);
	return 0;
}

/* Writes content to dir/name; returns the path in a static buffer. */
static const char *write_file(const struct fixture *f, const char *name, const char *content)
{
	static char path[256];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", f->dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(content, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static void load_ok(struct fixture *f)
{
	int rc = cfg_load(&f->cfg, f->err, sizeof f->err);

	if (rc != 0)
		print_error("cfg_load: %s\n", f->err);
	assert_int_equal(rc, 0);
}

/* Expects cfg_load to fail with `name` in err; the cfg is left with nothing to free. */
static void load_fails_naming(struct fixture *f, const char *name)
{
	int rc = cfg_load(&f->cfg, f->err, sizeof f->err);

	assert_int_equal(rc, -1);
	if (strstr(f->err, name) == NULL)
		print_error("err \"%s\" does not name %s\n", f->err, name);
	assert_non_null(strstr(f->err, name));
	assert_null(f->cfg.bot_token);
	assert_null(f->cfg.message_template);
	assert_null(f->cfg.db_path);
}

/* ---- env_file_parse_line ----------------------------------------------------------------- */

struct parsed {
	int rc;
	char key[64];
	char value[128];
	char err[128];
};

static struct parsed parse_line(const char *line)
{
	struct parsed p;

	memset(&p, 0, sizeof p);
	p.rc = env_file_parse_line(line, p.key, sizeof p.key, p.value, sizeof p.value, p.err,
				  sizeof p.err);
	return p;
}

static void expect_pair(const char *line, const char *key, const char *value)
{
	struct parsed p = parse_line(line);

	if (p.rc != 1)
		print_error("line [%s]: rc %d err %s\n", line, p.rc, p.err);
	assert_int_equal(p.rc, 1);
	assert_string_equal(p.key, key);
	assert_string_equal(p.value, value);
}

static void expect_skipped(const char *line)
{
	struct parsed p = parse_line(line);

	assert_int_equal(p.rc, 0);
}

static void expect_line_error(const char *line)
{
	struct parsed p = parse_line(line);

	if (p.rc != -1)
		print_error("line [%s] gave rc %d key [%s] value [%s]\n", line, p.rc, p.key,
			    p.value);
	assert_int_equal(p.rc, -1);
	assert_true(p.err[0] != '\0');
}

static void env_line_key_value(void **state)
{
	(void)state;
	expect_pair("PORT=8080", "PORT", "8080");
	expect_pair("PORT=8080\n", "PORT", "8080");
	expect_pair("PORT=8080\r\n", "PORT", "8080");
	expect_pair("_A1=x", "_A1", "x");
}

static void env_line_surrounding_spaces_are_trimmed_inner_kept(void **state)
{
	(void)state;
	expect_pair("   HOST=0.0.0.0   \n", "HOST", "0.0.0.0");
	expect_pair("\tMESSAGE_TEMPLATE=Your code {otp} here\n", "MESSAGE_TEMPLATE",
		    "Your code {otp} here");
}

static void env_line_empty_value(void **state)
{
	(void)state;
	expect_pair("LOG_LEVEL=", "LOG_LEVEL", "");
	expect_pair("LOG_LEVEL=\n", "LOG_LEVEL", "");
}

static void env_line_comments_and_blank_lines_are_skipped(void **state)
{
	(void)state;
	expect_skipped("# a comment");
	expect_skipped("   # an indented comment\n");
	expect_skipped("#PORT=1");
	expect_skipped("");
	expect_skipped("\n");
	expect_skipped("   \t \r\n");
}

static void env_line_export_prefix(void **state)
{
	(void)state;
	expect_pair("export PORT=9000", "PORT", "9000");
	expect_pair("  export KEY=V\n", "KEY", "V");
}

static void env_line_double_quotes_keep_hash_and_spaces(void **state)
{
	(void)state;
	expect_pair("KEY=\"a # b\"", "KEY", "a # b");
	expect_pair("KEY=\"  padded  \"\n", "KEY", "  padded  ");
	expect_pair("KEY=\"it's\"", "KEY", "it's");
	expect_pair("KEY=\"\"", "KEY", "");
}

static void env_line_single_quotes_keep_hash(void **state)
{
	(void)state;
	expect_pair("KEY='x #y'", "KEY", "x #y");
	expect_pair("KEY='say \"hi\"'\n", "KEY", "say \"hi\"");
}

static void env_line_quoted_value_may_have_a_trailing_comment(void **state)
{
	(void)state;
	expect_pair("KEY=\"v\" # comment", "KEY", "v");
	expect_pair("KEY='v'   \n", "KEY", "v");
}

static void env_line_unquoted_inline_comment_is_dropped(void **state)
{
	(void)state;
	expect_pair("PORT=8080 # the port", "PORT", "8080");
	expect_pair("PORT=8080\t#tab\n", "PORT", "8080");
	/* a '#' not preceded by a space is part of the value */
	expect_pair("KEY=abc#def", "KEY", "abc#def");
}

static void env_line_without_equals_is_an_error(void **state)
{
	(void)state;
	expect_line_error("PORT");
	expect_line_error("PORT 8080");
	expect_line_error("=8080");
	expect_line_error("1PORT=8080");
	expect_line_error("MY-KEY=1");
}

static void env_line_unterminated_quote_is_an_error(void **state)
{
	(void)state;
	expect_line_error("KEY=\"abc");
	expect_line_error("KEY='abc\n");
	expect_line_error("KEY=\"");
}

static void env_line_text_after_closing_quote_is_an_error(void **state)
{
	(void)state;
	expect_line_error("KEY=\"abc\"def");
	expect_line_error("KEY='a' b");
}

static void env_line_too_long_for_the_buffers_is_an_error(void **state)
{
	char key[4], value[4], err[64];

	(void)state;
	assert_int_equal(env_file_parse_line("K=abcdef", key, sizeof key, value, sizeof value, err,
					    sizeof err), -1);
	assert_int_equal(env_file_parse_line("LONGKEY=a", key, sizeof key, value, sizeof value, err,
					    sizeof err), -1);
	assert_int_equal(env_file_parse_line("KEY=abc", key, sizeof key, value, sizeof value, err,
					    sizeof err), 1);
	assert_string_equal(value, "abc");
}

/* ---- cfg_load --------------------------------------------------------------------------- */

static void defaults(void **state)
{
	struct fixture *f = *state;
	const struct cfg *c = &f->cfg;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	load_ok(f);
	assert_string_equal(c->bot_token, GOOD_TOKEN);
	assert_string_equal(c->api_base, "https://api.telegram.org");
	assert_int_equal(c->sandbox, 0);
	assert_int_equal(c->default_expire_s, 30);
	assert_int_equal(c->min_expire_s, 5);
	assert_int_equal(c->max_expire_s, 60);
	assert_int_equal(c->rate_limit_per_user, 5);
	assert_int_equal(c->rate_limit_window_hours, 1);
	assert_int_equal(c->rate_limit_window_s, 3600);
	assert_int_equal(c->rate_limit_per_ip, 10);
	assert_int_equal(c->port, 55155);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_non_null(c->message_template);
	assert_non_null(strstr(c->message_template, "{otp}"));
	assert_non_null(strstr(c->message_template, "{sec}"));
	assert_string_equal(c->db_path, f->db_path);
	assert_non_null(c->host);
	assert_true(c->telegram_timeout_ms > 0);
	assert_int_equal(c->max_sends_per_second, 30);
	assert_int_equal(c->send_wait_ms, 2000);
	assert_int_equal(c->max_pause_s, 3600);
	assert_int_equal(c->paid_broadcast, 0);
	assert_int_equal(c->fcgi_threads, 16);
	assert_int_equal(c->deleter_concurrency, 16);
	assert_int_equal(c->body_timeout_ms, 5000);
}

static void paid_broadcast_raises_the_budget_and_concurrency_defaults(void **state)
{
	struct fixture *f = *state;
	const struct cfg *c = &f->cfg;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("TELEGRAM_PAID_BROADCAST", "1", 1);
	load_ok(f);
	assert_int_equal(c->paid_broadcast, 1);
	assert_int_equal(c->max_sends_per_second, 1000);
	/* 1000 sends/s at 300 ms: 300 in flight; 2 processes carry 512 */
	assert_true(2 * c->fcgi_threads >= 1000 * 3 / 10);
	assert_true(c->deleter_concurrency >= 1000 * 3 / 10);
	cfg_free(&f->cfg);
	/* explicit settings still win */
	setenv("TELEGRAM_MAX_SENDS_PER_SECOND", "500", 1);
	setenv("OTP_FCGI_THREADS", "8", 1);
	load_ok(f);
	assert_int_equal(c->max_sends_per_second, 500);
	assert_int_equal(c->fcgi_threads, 8);
}

static void body_timeout_is_a_bounded_setting(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("OTP_BODY_TIMEOUT_SECONDS", "0", 1);
	load_fails_naming(f, "OTP_BODY_TIMEOUT_SECONDS");
	setenv("OTP_BODY_TIMEOUT_SECONDS", "301", 1);
	load_fails_naming(f, "OTP_BODY_TIMEOUT_SECONDS");
	setenv("OTP_BODY_TIMEOUT_SECONDS", "2", 1);
	load_ok(f);
	assert_int_equal(f->cfg.body_timeout_ms, 2000);
}

static void max_pause_is_a_bounded_setting(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("TELEGRAM_MAX_PAUSE_SECONDS", "0", 1);
	load_fails_naming(f, "TELEGRAM_MAX_PAUSE_SECONDS");
	setenv("TELEGRAM_MAX_PAUSE_SECONDS", "60", 1);
	load_ok(f);
	assert_int_equal(f->cfg.max_pause_s, 60);
}

static void stop_timeout_defaults_past_the_longest_expiry_and_is_bounded(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	load_ok(f);
	assert_int_equal(f->cfg.deleter_stop_timeout_s, 60 + 10);
	cfg_free(&f->cfg);
	setenv("MAX_EXPIRE_SECONDS", "300", 1);
	load_ok(f);
	assert_int_equal(f->cfg.deleter_stop_timeout_s, 300 + 10);
	cfg_free(&f->cfg);
	setenv("DELETER_STOP_TIMEOUT_SECONDS", "0", 1); /* no drain */
	load_ok(f);
	assert_int_equal(f->cfg.deleter_stop_timeout_s, 0);
	cfg_free(&f->cfg);
	setenv("DELETER_STOP_TIMEOUT_SECONDS", "-1", 1);
	load_fails_naming(f, "DELETER_STOP_TIMEOUT_SECONDS");
	setenv("DELETER_STOP_TIMEOUT_SECONDS", "90001", 1);
	load_fails_naming(f, "DELETER_STOP_TIMEOUT_SECONDS");
}

/* The token said twice is an error naming both and where each was set, never the token. */
static void token_and_token_file_together_are_an_error_naming_both(void **state)
{
	struct fixture *f = *state;
	const char *token_file = write_file(f, "token", "987654:FromFile_xyz\n");
	char env_path[256];

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("TELEGRAM_BOT_TOKEN_FILE", token_file, 1);
	load_fails_naming(f, "TELEGRAM_BOT_TOKEN_FILE (set in the environment)");
	assert_non_null(strstr(f->err, "TELEGRAM_BOT_TOKEN (set in the environment)"));
	assert_null(strstr(f->err, "ABCdef"));
	assert_null(strstr(f->err, "FromFile"));
	/* the token in the settings file, the file from the service manager (LoadCredential) */
	unsetenv("TELEGRAM_BOT_TOKEN");
	snprintf(env_path, sizeof env_path, "%s",
		 write_file(f, "otp.env", "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"));
	setenv("OTP_ENV_FILE", env_path, 1);
	load_fails_naming(f, "TELEGRAM_BOT_TOKEN (set in ");
	assert_non_null(strstr(f->err, env_path));
	assert_non_null(strstr(f->err, "TELEGRAM_BOT_TOKEN_FILE (set in the environment)"));
	assert_null(strstr(f->err, "ABCdef"));
}

static void unknown_key_in_the_settings_file_is_an_error_naming_it(void **state)
{
	struct fixture *f = *state;
	char expect[300];
	const char *path = write_file(f, "otp.env",
				      "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"
				      "API_KEYS=secret-key\n");

	snprintf(expect, sizeof expect, "%s:2: unknown setting API_KEYS", path);
	setenv("OTP_ENV_FILE", path, 1);
	load_fails_naming(f, expect);
	assert_null(strstr(f->err, "secret-key"));
	assert_null(getenv("API_KEYS"));
}

/* Settings read before the file would be ignored there: an error, not silence. */
static void environment_only_settings_in_the_file_are_an_error(void **state)
{
	struct fixture *f = *state;
	char expect[300];
	const char *path = write_file(f, "otp.env",
				      "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"
				      "OTP_ALLOW_CORE_DUMPS=1\n");

	snprintf(expect, sizeof expect, "%s:2: OTP_ALLOW_CORE_DUMPS is read from the environment only",
		 path);
	setenv("OTP_ENV_FILE", path, 1);
	load_fails_naming(f, expect);
}

/* The scripts' own names may stand beside the settings (make run's .env). */
static void script_names_in_the_settings_file_are_accepted(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "otp.env",
				      "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"
				      "SERVER=nginx\n"
				      "OTP_RUN_DIR=/tmp/x\n");

	setenv("OTP_ENV_FILE", path, 1);
	load_ok(f);
	unsetenv("SERVER");
	unsetenv("OTP_RUN_DIR");
}

static void unknown_setting_like_names_in_the_environment_are_listed(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("API_KEYS", "x", 1);
	setenv("OTP_DB_PATHS", "x", 1);
	setenv("RATE_LIMIT_PER_HOUR", "x", 1);
	setenv("OTP_WWW_DIR", "x", 1);   /* a script's */
	setenv("OTP_TEST_MARKER", "x", 1); /* the test suite's */
	setenv("HOME_DIR", "x", 1);      /* not a setting's shape */
	load_ok(f);
	assert_non_null(f->cfg.unknown_names);
	assert_non_null(strstr(f->cfg.unknown_names, "API_KEYS"));
	assert_non_null(strstr(f->cfg.unknown_names, "OTP_DB_PATHS"));
	assert_non_null(strstr(f->cfg.unknown_names, "RATE_LIMIT_PER_HOUR"));
	assert_null(strstr(f->cfg.unknown_names, "OTP_WWW_DIR"));
	assert_null(strstr(f->cfg.unknown_names, "OTP_TEST_MARKER"));
	assert_null(strstr(f->cfg.unknown_names, "HOME_DIR"));
	assert_null(strstr(f->cfg.unknown_names, "=")); /* names, never values */
	unsetenv("API_KEYS");
	unsetenv("OTP_DB_PATHS");
	unsetenv("RATE_LIMIT_PER_HOUR");
	unsetenv("OTP_WWW_DIR");
	unsetenv("OTP_TEST_MARKER");
	unsetenv("HOME_DIR");
	cfg_free(&f->cfg);
	load_ok(f);
	if (f->cfg.unknown_names != NULL) /* the runner's own environment may hold some */
		assert_null(strstr(f->cfg.unknown_names, "API_KEYS"));
}

static void every_setting_is_a_known_name(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof SETTINGS / sizeof SETTINGS[0]; i++) {
		if (!cfg_is_known_name(SETTINGS[i]))
			print_error("%s is read but not known\n", SETTINGS[i]);
		assert_true(cfg_is_known_name(SETTINGS[i]));
	}
	assert_false(cfg_is_known_name("API_KEYS"));
	assert_false(cfg_is_known_name("PORT2"));
	assert_false(cfg_is_known_name("POR"));
}

/* ---- the docs' settings table -------------------------------------------------------- */

#define SETTINGS_DOC "docs/settings.md" /* make runs the unit tests from the project's root */

/* The first cell of the table row of docs/settings.md that names `name` (cells may name
 * several settings: "`MIN_EXPIRE_SECONDS` / `MAX_EXPIRE_SECONDS`"), its position k among
 * them, and the row's second cell (the default) into dflt. Returns 1 when found. */
static int doc_row(const char *name, int *k, char *dflt, size_t len)
{
	char line[2048], want[96];
	FILE *f = fopen(SETTINGS_DOC, "r");
	int found = 0;

	assert_non_null(f);
	snprintf(want, sizeof want, "`%s`", name);
	while (!found && fgets(line, sizeof line, f) != NULL) {
		char *first, *second, *end, *p;

		if (strncmp(line, "| `", 3) != 0)
			continue;
		first = line + 2;
		second = strstr(first, " | ");
		if (second == NULL)
			continue;
		*second = '\0';
		second += 3;
		if ((p = strstr(first, want)) == NULL)
			continue;
		*k = 0;
		for (end = first; end < p; end++)
			if (*end == '/')
				(*k)++;
		end = strstr(second, " | ");
		if (end != NULL)
			*end = '\0';
		snprintf(dflt, len, "%s", second);
		found = 1;
	}
	fclose(f);
	return found;
}

/* Every setting has a row in docs/settings.md. */
static void the_docs_table_names_every_setting(void **state)
{
	const char *const *names;
	char dflt[1024];
	size_t i, n;
	int k, missing = 0;

	(void)state;
	names = cfg_setting_names(&n);
	for (i = 0; i < n; i++)
		if (!doc_row(names[i], &k, dflt, sizeof dflt)) {
			print_error("%s: no row in " SETTINGS_DOC "\n", names[i]);
			missing++;
		}
	assert_int_equal(missing, 0);
}

/* The defaults docs/settings.md gives for the numeric settings are the table's. */
static void the_docs_table_gives_the_numeric_defaults(void **state)
{
	const struct cfg_int_setting *t;
	char dflt[1024], want[64], *p;
	size_t i, n;
	int k, j, wrong = 0;

	(void)state;
	t = cfg_int_settings(&n);
	for (i = 0; i < n; i++) {
		assert_true(doc_row(t[i].name, &k, dflt, sizeof dflt));
		for (p = dflt, j = 0; j < k && p != NULL; j++) /* the k-th of "a / b" */
			if ((p = strstr(p, " / ")) != NULL)
				p += 3;
		snprintf(want, sizeof want, "`%d`", t[i].def);
		if (p == NULL || strncmp(p, want, strlen(want)) != 0) {
			print_error("%s: the docs say %s, the default is %s\n", t[i].name, dflt, want);
			wrong++;
		}
		snprintf(want, sizeof want, "(`%d` with paid broadcast)", t[i].paid_def);
		if (t[i].paid_def != t[i].def && strstr(dflt, want) == NULL) {
			print_error("%s: the docs do not say %s\n", t[i].name, want);
			wrong++;
		}
	}
	assert_int_equal(wrong, 0);
}

static void loopback_hosts_are_told_from_the_others(void **state)
{
	static const char *const loopback[] = { "127.0.0.1", "127.1.2.3", "localhost", "::1",
						"[::1]", "::ffff:127.0.0.1", "LOCALHOST" };
	static const char *const beyond[] = { "0.0.0.0", "::", "[::]", "10.0.0.5", "192.168.1.1",
					      "example.org", "", "128.0.0.1", "::ffff:10.0.0.1" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof loopback / sizeof loopback[0]; i++)
		assert_true(cfg_host_is_loopback(loopback[i]));
	for (i = 0; i < sizeof beyond / sizeof beyond[0]; i++) {
		if (cfg_host_is_loopback(beyond[i]))
			print_error("%s taken for loopback\n", beyond[i]);
		assert_false(cfg_host_is_loopback(beyond[i]));
	}
}

static void missing_token_without_sandbox_fails(void **state)
{
	struct fixture *f = *state;

	load_fails_naming(f, "TELEGRAM_BOT_TOKEN");
}

static void malformed_token_is_rejected_without_echoing_it(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"SECRETVALUE42", "abc:SECRETVALUE42", "123456:SECRET VALUE42", ":SECRETVALUE42",
		"123456:",
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		setenv("TELEGRAM_BOT_TOKEN", bad[i], 1);
		load_fails_naming(f, "TELEGRAM_BOT_TOKEN");
		assert_null(strstr(f->err, "SECRET"));
	}
}

static void port_not_a_number_is_named(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("PORT", "abc", 1);
	load_fails_naming(f, "PORT");
	setenv("PORT", "80x", 1);
	load_fails_naming(f, "PORT");
	setenv("PORT", "70000", 1);
	load_fails_naming(f, "PORT");
	setenv("PORT", "8080", 1);
	load_ok(f);
	assert_int_equal(f->cfg.port, 8080);
}

static void min_above_max_is_rejected(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("MIN_EXPIRE_SECONDS", "50", 1);
	setenv("MAX_EXPIRE_SECONDS", "10", 1);
	load_fails_naming(f, "MIN_EXPIRE_SECONDS");
	assert_non_null(strstr(f->err, "MAX_EXPIRE_SECONDS"));
}

static void default_expire_outside_min_max_is_rejected(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("DEFAULT_EXPIRE_SECONDS", "100", 1);
	load_fails_naming(f, "DEFAULT_EXPIRE_SECONDS");
	setenv("DEFAULT_EXPIRE_SECONDS", "4", 1);
	load_fails_naming(f, "DEFAULT_EXPIRE_SECONDS");
	setenv("DEFAULT_EXPIRE_SECONDS", "60", 1);
	load_ok(f);
	assert_int_equal(f->cfg.default_expire_s, 60);
}

static void window_seconds_overrides_hours(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("RATE_LIMIT_WINDOW_HOURS", "2", 1);
	load_ok(f);
	assert_int_equal(f->cfg.rate_limit_window_s, 7200);
	assert_int_equal(f->cfg.rate_limit_window_hours, 2);
	cfg_free(&f->cfg);

	setenv("RATE_LIMIT_WINDOW_SECONDS", "90", 1);
	load_ok(f);
	assert_int_equal(f->cfg.rate_limit_window_s, 90);
	assert_int_equal(f->cfg.rate_limit_window_hours, 2);
}

static void sandbox_without_api_base_names_it(void **state)
{
	struct fixture *f = *state;

	setenv("OTP_SANDBOX", "1", 1);
	load_fails_naming(f, "TELEGRAM_API_BASE");
}

static void sandbox_with_api_base_needs_no_token(void **state)
{
	struct fixture *f = *state;

	setenv("OTP_SANDBOX", "1", 1);
	setenv("TELEGRAM_API_BASE", "http://127.0.0.1:8081//", 1);
	load_ok(f);
	assert_int_equal(f->cfg.sandbox, 1);
	assert_string_equal(f->cfg.api_base, "http://127.0.0.1:8081");
	assert_non_null(f->cfg.bot_token);
}

static void token_file_is_read_and_trimmed(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "token", "987654:FromFile_xyz\n\n");

	setenv("TELEGRAM_BOT_TOKEN_FILE", path, 1);
	load_ok(f);
	assert_string_equal(f->cfg.bot_token, "987654:FromFile_xyz");
}

static void env_file_values_are_used(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "otp.env",
				      "# settings\n"
				      "export TELEGRAM_BOT_TOKEN=\"" GOOD_TOKEN "\"\n"
				      "\n"
				      "PORT=8181 # inline\n"
				      "RATE_LIMIT_PER_USER='9'\n"
				      "LOG_LEVEL=debug\n");

	setenv("OTP_ENV_FILE", path, 1);
	load_ok(f);
	assert_string_equal(f->cfg.bot_token, GOOD_TOKEN);
	assert_int_equal(f->cfg.port, 8181);
	assert_int_equal(f->cfg.rate_limit_per_user, 9);
	assert_int_equal(f->cfg.log_level, LOG_DEBUG);
}

static void environment_wins_over_the_env_file(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "otp.env",
				      "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"
				      "PORT=2222\n"
				      "RATE_LIMIT_PER_IP=3\n");

	setenv("OTP_ENV_FILE", path, 1);
	setenv("PORT", "1111", 1);
	load_ok(f);
	assert_int_equal(f->cfg.port, 1111);
	assert_int_equal(f->cfg.rate_limit_per_ip, 3);
}

static void env_file_bad_line_is_reported_as_file_colon_line(void **state)
{
	struct fixture *f = *state;
	char expect[300];
	const char *path = write_file(f, "bad.env",
				      "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\n"
				      "# fine\n"
				      "this line is wrong\n");

	snprintf(expect, sizeof expect, "%s:3", path);
	setenv("OTP_ENV_FILE", path, 1);
	load_fails_naming(f, expect);
}

/* Past the line buffer: an error naming the line; its tail is never applied as a setting. */
static void env_file_overlong_line_is_an_error_naming_it(void **state)
{
	struct fixture *f = *state;
	static char text[8192];
	char expect[300];
	size_t n;
	const char *path;

	n = (size_t)snprintf(text, sizeof text, "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\nMESSAGE_TEMPLATE=");
	memset(text + n, 'x', 4095 - 17); /* then "PORT=1234": the old reader set it */
	n += 4095 - 17;
	snprintf(text + n, sizeof text - n, "PORT=1234\n");
	path = write_file(f, "long.env", text);
	snprintf(expect, sizeof expect, "%s:2: line longer than 4095 bytes", path);
	setenv("OTP_ENV_FILE", path, 1);
	load_fails_naming(f, expect);
	assert_null(getenv("PORT"));
}

/* 4095 bytes is the limit, and fits; so does a last line without a newline. */
static void env_file_line_at_the_limit_is_read(void **state)
{
	struct fixture *f = *state;
	static char text[8192];
	size_t n;
	const char *path;

	n = (size_t)snprintf(text, sizeof text, "TELEGRAM_BOT_TOKEN=" GOOD_TOKEN "\nAPI_KEY=");
	memset(text + n, 'k', 4095 - 8);
	n += 4095 - 8;
	snprintf(text + n, sizeof text - n, "\nPORT=1234");
	path = write_file(f, "limit.env", text);
	setenv("OTP_ENV_FILE", path, 1);
	load_ok(f);
	assert_int_equal(strlen(f->cfg.api_key), 4095 - 8);
	assert_int_equal(f->cfg.port, 1234);
}

static void env_file_missing_is_an_error(void **state)
{
	struct fixture *f = *state;
	char path[200];

	snprintf(path, sizeof path, "%s/does-not-exist.env", f->dir);
	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("OTP_ENV_FILE", path, 1);
	load_fails_naming(f, "does-not-exist.env");
}

static void template_backslash_n_becomes_a_newline(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("MESSAGE_TEMPLATE", "Code: <b>{otp}</b>\\nExpires in {sec}s\\n", 1);
	load_ok(f);
	assert_string_equal(f->cfg.message_template, "Code: <b>{otp}</b>\nExpires in {sec}s\n");
}

static void template_without_otp_is_rejected(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("MESSAGE_TEMPLATE", "Your code expires in {sec} seconds", 1);
	load_fails_naming(f, "MESSAGE_TEMPLATE");
}

static void log_level_is_parsed_and_checked(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("LOG_LEVEL", "warning", 1);
	load_ok(f);
	assert_int_equal(f->cfg.log_level, LOG_WARNING);
	cfg_free(&f->cfg);
	setenv("LOG_LEVEL", "verbose", 1);
	load_fails_naming(f, "LOG_LEVEL");
}

static void cfg_free_wipes_and_is_safe_twice(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	load_ok(f);
	cfg_free(&f->cfg);
	assert_null(f->cfg.bot_token);
	assert_null(f->cfg.db_path);
	cfg_free(&f->cfg);
}

/* ---- the store (OTP_STORE) ------------------------------------------------------------- */

static void store_defaults_to_the_sqlite_file(void **state)
{
	struct fixture *f = *state;
	struct store_config sc;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	load_ok(f);
	assert_string_equal(f->cfg.store_url, f->db_path);
	assert_false(f->cfg.store_is_shared);
	cfg_store_config(&f->cfg, &sc);
	assert_string_equal(sc.url, f->db_path);
	assert_null(sc.redis_password_file);
}

static void store_sqlite_url_sets_the_database_path(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("OTP_STORE", "sqlite:///dev/shm/elsewhere.db", 1);
	load_ok(f);
	assert_string_equal(f->cfg.db_path, "/dev/shm/elsewhere.db");
	assert_false(f->cfg.store_is_shared);
}

static void store_redis_url_takes_the_redis_settings(void **state)
{
	struct fixture *f = *state;
	struct store_config sc;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("TELEGRAM_TIMEOUT_SECONDS", "5", 1);
	setenv("OTP_STORE", "redis://10.0.0.10:6380/2", 1);
	setenv("OTP_REDIS_PASSWORD_FILE", "/etc/otp-gateway/redis-password", 1);
	setenv("OTP_REDIS_PREFIX", "gw1:", 1);
	setenv("OTP_HOST_NAME", "host-a", 1);
	load_ok(f);
	assert_true(f->cfg.store_is_shared);
	assert_null(f->cfg.db_path);
	cfg_store_config(&f->cfg, &sc);
	assert_string_equal(sc.url, "redis://10.0.0.10:6380/2");
	assert_string_equal(sc.redis_password_file, "/etc/otp-gateway/redis-password");
	assert_string_equal(sc.redis_prefix, "gw1:");
	assert_string_equal(sc.host_name, "host-a");
	assert_int_equal(sc.lease_ms, 2 * 5000 + 10000);
}

static void store_url_errors_name_the_setting_and_never_quote_a_password(void **state)
{
	struct fixture *f = *state;

	setenv("TELEGRAM_BOT_TOKEN", GOOD_TOKEN, 1);
	setenv("OTP_STORE", "redis://:hunter2@10.0.0.10", 1);
	load_fails_naming(f, "OTP_STORE");
	assert_null(strstr(f->err, "hunter2"));
	setenv("OTP_STORE", "mysql://db", 1);
	load_fails_naming(f, "OTP_STORE");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(env_line_key_value),
		cmocka_unit_test(env_line_surrounding_spaces_are_trimmed_inner_kept),
		cmocka_unit_test(env_line_empty_value),
		cmocka_unit_test(env_line_comments_and_blank_lines_are_skipped),
		cmocka_unit_test(env_line_export_prefix),
		cmocka_unit_test(env_line_double_quotes_keep_hash_and_spaces),
		cmocka_unit_test(env_line_single_quotes_keep_hash),
		cmocka_unit_test(env_line_quoted_value_may_have_a_trailing_comment),
		cmocka_unit_test(env_line_unquoted_inline_comment_is_dropped),
		cmocka_unit_test(env_line_without_equals_is_an_error),
		cmocka_unit_test(env_line_unterminated_quote_is_an_error),
		cmocka_unit_test(env_line_text_after_closing_quote_is_an_error),
		cmocka_unit_test(env_line_too_long_for_the_buffers_is_an_error),
		T(defaults),
		T(paid_broadcast_raises_the_budget_and_concurrency_defaults),
		T(max_pause_is_a_bounded_setting),
		T(body_timeout_is_a_bounded_setting),
		T(missing_token_without_sandbox_fails),
		T(stop_timeout_defaults_past_the_longest_expiry_and_is_bounded),
		T(token_and_token_file_together_are_an_error_naming_both),
		T(unknown_key_in_the_settings_file_is_an_error_naming_it),
		T(script_names_in_the_settings_file_are_accepted),
		T(environment_only_settings_in_the_file_are_an_error),
		T(unknown_setting_like_names_in_the_environment_are_listed),
		cmocka_unit_test(every_setting_is_a_known_name),
		cmocka_unit_test(loopback_hosts_are_told_from_the_others),
		cmocka_unit_test(the_docs_table_names_every_setting),
		cmocka_unit_test(the_docs_table_gives_the_numeric_defaults),
		T(malformed_token_is_rejected_without_echoing_it),
		T(port_not_a_number_is_named),
		T(min_above_max_is_rejected),
		T(default_expire_outside_min_max_is_rejected),
		T(window_seconds_overrides_hours),
		T(sandbox_without_api_base_names_it),
		T(sandbox_with_api_base_needs_no_token),
		T(token_file_is_read_and_trimmed),
		T(env_file_values_are_used),
		T(environment_wins_over_the_env_file),
		T(env_file_bad_line_is_reported_as_file_colon_line),
		T(env_file_missing_is_an_error),
		T(env_file_overlong_line_is_an_error_naming_it),
		T(env_file_line_at_the_limit_is_read),
		T(template_backslash_n_becomes_a_newline),
		T(template_without_otp_is_rejected),
		T(log_level_is_parsed_and_checked),
		T(cfg_free_wipes_and_is_safe_twice),
		T(store_defaults_to_the_sqlite_file),
		T(store_sqlite_url_sets_the_database_path),
		T(store_redis_url_takes_the_redis_settings),
		T(store_url_errors_name_the_setting_and_never_quote_a_password),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
