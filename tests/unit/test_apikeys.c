/* test_apikeys.c — fcgi/apikeys.h: keys from API_KEY, OTP_API_KEYS and the keys file; names,
 * owners and limits; exact matching; the file read again when it changes, and a bad new file
 * keeping the keys in force. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apikeys.h"
#include "log.h"
#include "tmpdir.h"

/* sha256("key-three") */
#define KEY_THREE_SHA256 "2f06bcf4e8d96d66f0b8d972e1d9351a255f82ff4cf1a12b63c8d3642206547e"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/otp-apikeys-XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	remove_dir(dir);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	char tmp[128];
	FILE *f;

	/* replaced whole, as an editor or a deploy tool does */
	snprintf(tmp, sizeof tmp, "%s.new", path);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(rename(tmp, path), 0);
}

static int matches(struct apikeys *k, const char *key, int64_t now, struct apikey_match *m)
{
	return apikeys_check(k, key, now, m);
}

static void no_key_configured_is_not_enabled(void **state)
{
	char err[256];
	struct apikeys *k = apikeys_new(&(struct apikeys_config){ NULL, NULL, NULL }, err, sizeof err);
	struct apikey_match m;

	(void)state;
	assert_non_null(k);
	assert_false(apikeys_enabled(k));
	assert_false(matches(k, "anything", 0, &m));
	apikeys_free(k);
}

static void every_configured_key_matches_exactly_and_nothing_else(void **state)
{
	char err[256];
	struct apikeys *k = apikeys_new(&(struct apikeys_config){ "legacy-key", "key-one,shop:key-two",
								  NULL }, err, sizeof err);
	struct apikey_match m;

	(void)state;
	assert_non_null(k);
	assert_true(apikeys_enabled(k));
	assert_int_equal(apikeys_count(k), 3);
	assert_true(matches(k, "legacy-key", 0, &m));
	assert_string_equal(m.name, "");
	assert_int_equal(m.owner[0], '#');
	assert_int_equal(strlen(m.owner), 9);
	assert_true(matches(k, "key-one", 0, &m));
	assert_string_equal(m.name, "");
	assert_true(matches(k, "key-two", 0, &m));
	assert_string_equal(m.name, "shop");
	assert_string_equal(m.owner, "shop");
	/* the name is not part of the key; a prefix, an extension, another case are other keys */
	assert_false(matches(k, "shop:key-two", 0, &m));
	assert_false(matches(k, "key-tw", 0, &m));
	assert_false(matches(k, "key-two ", 0, &m));
	assert_false(matches(k, "KEY-ONE", 0, &m));
	assert_false(matches(k, "", 0, &m));
	apikeys_free(k);
}

static void unnamed_keys_have_owners_of_their_own(void **state)
{
	char err[256], first[APIKEY_NAME_MAX + 1];
	struct apikeys *k = apikeys_new(&(struct apikeys_config){ NULL, "key-one,key-two", NULL },
					err, sizeof err);
	struct apikey_match m;

	(void)state;
	assert_true(matches(k, "key-one", 0, &m));
	memcpy(first, m.owner, sizeof first);
	assert_true(matches(k, "key-two", 0, &m));
	assert_string_not_equal(first, m.owner);
	apikeys_free(k);
}

static void malformed_settings_are_refused_naming_the_problem(void **state)
{
	char err[256];
	struct {
		struct apikeys_config c;
		const char *needle;
	} cases[] = {
		{ { NULL, "key-one,,key-two", NULL }, "empty key" },
		{ { NULL, "a:b:c d", NULL }, "malformed" },
		{ { NULL, "shop:one,shop:two", NULL }, "given twice" },
		{ { NULL, NULL, "/nonexistent/keys" }, "cannot open" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = '\0';
		assert_null(apikeys_new(&cases[i].c, err, sizeof err));
		assert_non_null(strstr(err, cases[i].needle));
		assert_null(strstr(err, "key-two")); /* a key is never echoed */
	}
}

static void file_lines_parse_names_digests_and_limits(void **state)
{
	char name[APIKEY_NAME_MAX + 1], err[256];
	unsigned char d[32];
	int limit;

	(void)state;
	assert_int_equal(apikeys_parse_line("# a comment\n", name, d, &limit, err, sizeof err), 0);
	assert_int_equal(apikeys_parse_line("   \n", name, d, &limit, err, sizeof err), 0);
	assert_int_equal(apikeys_parse_line("shop key-one\n", name, d, &limit, err, sizeof err), 1);
	assert_string_equal(name, "shop");
	assert_int_equal(limit, 0);
	assert_int_equal(apikeys_parse_line("forum sha256:" KEY_THREE_SHA256 " limit=20 # note\n",
					    name, d, &limit, err, sizeof err), 1);
	assert_int_equal(limit, 20);
	assert_int_equal(d[0], 0x2f);
	assert_int_equal(apikeys_parse_line("bad/name key\n", name, d, &limit, err, sizeof err), -1);
	assert_int_equal(apikeys_parse_line("shop\n", name, d, &limit, err, sizeof err), -1);
	assert_int_equal(apikeys_parse_line("shop sha256:abc\n", name, d, &limit, err, sizeof err), -1);
	assert_int_equal(apikeys_parse_line("shop key limit=0\n", name, d, &limit, err, sizeof err), -1);
	assert_int_equal(apikeys_parse_line("shop key extra\n", name, d, &limit, err, sizeof err), -1);
	assert_int_equal(apikeys_parse_line("shop key limit=5 x\n", name, d, &limit, err, sizeof err),
			 -1);
}

static void the_file_is_read_again_when_it_changes_and_a_bad_one_keeps_the_old_keys(void **state)
{
	char path[128], err[256];
	struct apikeys *k;
	struct apikey_match m;

	(void)state;
	snprintf(path, sizeof path, "%s/keys", dir);
	write_file(path, "shop key-one\nforum sha256:" KEY_THREE_SHA256 " limit=20\n");
	k = apikeys_new(&(struct apikeys_config){ NULL, NULL, path }, err, sizeof err);
	assert_non_null(k);
	assert_true(matches(k, "key-one", 0, &m));
	assert_true(matches(k, "key-three", 0, &m));
	assert_string_equal(m.owner, "forum");
	assert_int_equal(m.limit_per_minute, 20);

	/* rotation: shop gets a new key; until the next look (a second later) the old one holds */
	write_file(path, "shop key-new\nforum sha256:" KEY_THREE_SHA256 "\n");
	assert_true(matches(k, "key-one", 500, &m));
	assert_false(matches(k, "key-one", 1000, &m));
	assert_true(matches(k, "key-new", 1000, &m));
	assert_string_equal(m.owner, "shop");
	assert_true(matches(k, "key-three", 1000, &m));
	assert_int_equal(m.limit_per_minute, 0);

	/* a new file that does not parse: the keys in force stay */
	write_file(path, "shop\n");
	assert_true(matches(k, "key-new", 2000, &m));
	assert_true(matches(k, "key-new", 3000, &m));
	/* SIGHUP's path reads at once */
	write_file(path, "admin key-admin\n");
	assert_int_equal(apikeys_reload(k), 0);
	assert_false(matches(k, "key-new", 3000, &m));
	assert_true(matches(k, "key-admin", 3000, &m));
	apikeys_free(k);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(no_key_configured_is_not_enabled),
		T(every_configured_key_matches_exactly_and_nothing_else),
		T(unnamed_keys_have_owners_of_their_own),
		T(malformed_settings_are_refused_naming_the_problem),
		T(file_lines_parse_names_digests_and_limits),
		T(the_file_is_read_again_when_it_changes_and_a_bad_one_keeps_the_old_keys),
	};
#undef T

	log_init("test_apikeys", LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
