/* test_validate_revoke.c — fcgi/validate.h: the POST /revoke-otp body, checked by its own field
 * table with the same rules and error shapes as /send-otp's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "validate.h"

static void expect_valid(const char *body, const char *chat_id, long long message_id)
{
	struct revoke_otp_request out;
	json_t *detail = (json_t *)1;

	assert_int_equal(validate_revoke_otp(body, strlen(body), &out, &detail), 0);
	assert_null(detail);
	assert_string_equal(out.chat_id, chat_id);
	assert_int_equal(out.message_id, message_id);
}

/* Expects exactly one error item {"type","loc":["body"(,field)],"msg"}, without "input". */
static void expect_error(const char *body, const char *type, const char *field, const char *msg)
{
	struct revoke_otp_request out;
	json_t *detail = NULL, *item, *loc;

	assert_int_equal(validate_revoke_otp(body, strlen(body), &out, &detail), -1);
	assert_non_null(detail);
	if (json_array_size(detail) != 1) {
		char *s = json_dumps(detail, JSON_COMPACT);

		print_error("body %s gave %s\n", body, s);
		free(s);
	}
	assert_int_equal(json_array_size(detail), 1);
	item = json_array_get(detail, 0);
	assert_int_equal(json_object_size(item), 3);
	assert_string_equal(json_string_value(json_object_get(item, "type")), type);
	assert_string_equal(json_string_value(json_object_get(item, "msg")), msg);
	loc = json_object_get(item, "loc");
	assert_int_equal(json_array_size(loc), field != NULL ? 2 : 1);
	assert_string_equal(json_string_value(json_array_get(loc, 0)), "body");
	if (field != NULL)
		assert_string_equal(json_string_value(json_array_get(loc, 1)), field);
	json_decref(detail);
}

static void every_chat_id_form_of_send_otp_is_accepted_and_normalised(void **state)
{
	(void)state;
	expect_valid("{\"chat_id\": \"123456789\", \"message_id\": 42}", "123456789", 42);
	expect_valid("{\"chat_id\": 123456789, \"message_id\": 42}", "123456789", 42);
	expect_valid("{\"chat_id\": -1001234567890, \"message_id\": 1}", "-1001234567890", 1);
	expect_valid("{\"message_id\": 7, \"chat_id\": \"@My_Channel\"}", "@My_Channel", 7);
	expect_valid("{\"chat_id\": \"1\", \"message_id\": 9223372036854775807}", "1",
		     9223372036854775807LL);
}

static void missing_fields_are_each_reported(void **state)
{
	struct revoke_otp_request out;
	json_t *detail = NULL;

	(void)state;
	expect_error("{\"chat_id\": \"1\"}", "missing", "message_id", "Field required");
	expect_error("{\"message_id\": 1}", "missing", "chat_id", "Field required");
	assert_int_equal(validate_revoke_otp("{}", 2, &out, &detail), -1);
	assert_int_equal(json_array_size(detail), 2);
	json_decref(detail);
}

static void message_id_must_be_a_json_integer(void **state)
{
	(void)state;
	expect_error("{\"chat_id\": \"1\", \"message_id\": \"42\"}", "int_type", "message_id",
		     "Input should be a valid integer");
	expect_error("{\"chat_id\": \"1\", \"message_id\": 42.0}", "int_type", "message_id",
		     "Input should be a valid integer");
	expect_error("{\"chat_id\": \"1\", \"message_id\": true}", "int_type", "message_id",
		     "Input should be a valid integer");
	expect_error("{\"chat_id\": \"1\", \"message_id\": null}", "int_type", "message_id",
		     "Input should be a valid integer");
}

static void message_id_must_be_positive(void **state)
{
	(void)state;
	expect_error("{\"chat_id\": \"1\", \"message_id\": 0}", "greater_than", "message_id",
		     "Input should be greater than 0");
	expect_error("{\"chat_id\": \"1\", \"message_id\": -3}", "greater_than", "message_id",
		     "Input should be greater than 0");
}

static void chat_id_rules_are_send_otps(void **state)
{
	(void)state;
	expect_error("{\"chat_id\": \"0123\", \"message_id\": 1}", "value_error", "chat_id",
		     "Value error, chat_id must be a numeric string (can start with -), a JSON "
		     "integer, or an @channelusername of 5-32 letters, digits or underscores");
	expect_error("{\"chat_id\": \"@abc\", \"message_id\": 1}", "value_error", "chat_id",
		     "Value error, chat_id must be a numeric string (can start with -), a JSON "
		     "integer, or an @channelusername of 5-32 letters, digits or underscores");
	expect_error("{\"chat_id\": 0, \"message_id\": 1}", "value_error", "chat_id",
		     "Value error, chat_id must be a numeric string (can start with -), a JSON "
		     "integer, or an @channelusername of 5-32 letters, digits or underscores");
	expect_error("{\"chat_id\": [1], \"message_id\": 1}", "string_type", "chat_id",
		     "Input should be a valid string");
}

static void extra_fields_and_bad_json_are_refused(void **state)
{
	(void)state;
	expect_error("{\"chat_id\": \"1\", \"message_id\": 1, \"otp\": \"1234\"}", "extra_forbidden",
		     "otp", "Extra inputs are not permitted");
	expect_error("{\"chat_id\": \"1\", \"message_id\": 1, \"message_id\": 2}", "json_invalid",
		     NULL, "JSON decode error");
	expect_error("{\"chat_id\": \"1\", \"message_id\": 99999999999999999999}", "json_invalid",
		     NULL, "JSON decode error");
	expect_error("[]", "model_attributes_type", NULL,
		     "Input should be a valid dictionary or object to extract fields from");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_chat_id_form_of_send_otp_is_accepted_and_normalised),
		cmocka_unit_test(missing_fields_are_each_reported),
		cmocka_unit_test(message_id_must_be_a_json_integer),
		cmocka_unit_test(message_id_must_be_positive),
		cmocka_unit_test(chat_id_rules_are_send_otps),
		cmocka_unit_test(extra_fields_and_bad_json_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
