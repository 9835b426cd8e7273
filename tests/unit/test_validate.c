/* test_validate.c — fcgi/validate.h: the POST /send-otp body and its pydantic-style errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app.h"
#include "store.h"
#include "validate.h"

static const struct send_otp_limits LIM = { .min_expire_s = 5, .max_expire_s = 60,
					    .default_expire_s = 30 };

#define CHAT_ID_MSG_PREFIX "Value error, chat_id must be"

/* ---- helpers ---------------------------------------------------------------------------- */

static void expect_valid(const char *body, struct send_otp_request *out)
{
	json_t *detail = (json_t *)1;
	int rc = validate_send_otp(body, strlen(body), &LIM, out, &detail);

	if (rc != 0 && detail != NULL && detail != (json_t *)1) {
		char *s = json_dumps(detail, JSON_COMPACT);

		print_error("unexpected errors for %s: %s\n", body, s);
		free(s);
		json_decref(detail);
	}
	assert_int_equal(rc, 0);
	assert_null(detail);
}

/* Validates body, expects failure, returns the detail array (the caller decrefs it). */
static json_t *expect_invalid(const char *body, size_t nitems)
{
	struct send_otp_request out;
	json_t *detail = NULL;
	int rc = validate_send_otp(body, strlen(body), &LIM, &out, &detail);

	assert_int_equal(rc, -1);
	assert_non_null(detail);
	assert_true(json_is_array(detail));
	if (json_array_size(detail) != nitems) {
		char *s = json_dumps(detail, JSON_COMPACT);

		print_error("body %s gave %s\n", body, s);
		free(s);
	}
	assert_int_equal(json_array_size(detail), nitems);
	return detail;
}

/* Checks detail[idx] is exactly {"type": type, "loc": ["body"(, field)], "msg": msg}. A NULL msg
 * is not checked; msg_prefix checks only the start. No "input" key, ever. */
static void check_item_full(json_t *detail, size_t idx, const char *type, const char *field,
			    const char *msg, int msg_is_prefix)
{
	json_t *item = json_array_get(detail, idx);
	json_t *loc;

	assert_non_null(item);
	assert_true(json_is_object(item));
	assert_null(json_object_get(item, "input"));
	assert_int_equal(json_object_size(item), 3);
	assert_true(json_is_string(json_object_get(item, "type")));
	assert_string_equal(json_string_value(json_object_get(item, "type")), type);
	loc = json_object_get(item, "loc");
	assert_true(json_is_array(loc));
	assert_int_equal(json_array_size(loc), field != NULL ? 2 : 1);
	assert_true(json_is_string(json_array_get(loc, 0)));
	assert_string_equal(json_string_value(json_array_get(loc, 0)), "body");
	if (field != NULL) {
		assert_true(json_is_string(json_array_get(loc, 1)));
		assert_string_equal(json_string_value(json_array_get(loc, 1)), field);
	}
	assert_true(json_is_string(json_object_get(item, "msg")));
	if (msg != NULL && msg_is_prefix)
		assert_int_equal(strncmp(json_string_value(json_object_get(item, "msg")), msg,
					 strlen(msg)), 0);
	else if (msg != NULL)
		assert_string_equal(json_string_value(json_object_get(item, "msg")), msg);
}

static void check_item(json_t *detail, size_t idx, const char *type, const char *field,
		       const char *msg)
{
	check_item_full(detail, idx, type, field, msg, 0);
}

static void expect_single_error(const char *body, const char *type, const char *field,
				const char *msg)
{
	json_t *detail = expect_invalid(body, 1);

	check_item(detail, 0, type, field, msg);
	json_decref(detail);
}

static void expect_bad_chat_id(const char *chat_id_json)
{
	char body[256];
	json_t *detail;

	snprintf(body, sizeof body, "{\"chat_id\":%s,\"otp\":\"1234\"}", chat_id_json);
	detail = expect_invalid(body, 1);
	check_item_full(detail, 0, "value_error", "chat_id", CHAT_ID_MSG_PREFIX, 1);
	json_decref(detail);
}

/* ---- valid bodies ----------------------------------------------------------------------- */

static void valid_string_chat_id_otp_and_expire_are_copied_out(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"123456789\",\"otp\":\"123456\",\"expire_seconds\":10}", &r);
	assert_string_equal(r.chat_id, "123456789");
	assert_string_equal(r.otp, "123456");
	assert_int_equal(r.expire_seconds, 10);
}

static void valid_negative_chat_id_string(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"-987654\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "-987654");
}

static void valid_minus_100_channel_id(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"-1001234567890\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "-1001234567890");
}

static void valid_int64_extremes_as_strings(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"9223372036854775807\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "9223372036854775807");
	expect_valid("{\"chat_id\":\"-9223372036854775808\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "-9223372036854775808");
}

static void json_integer_chat_id_is_normalised_to_decimal_text(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":123456789,\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "123456789");
	expect_valid("{\"chat_id\":-1001234567890,\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "-1001234567890");
	expect_valid("{\"chat_id\":9223372036854775807,\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "9223372036854775807");
	expect_valid("{\"chat_id\":-9223372036854775808,\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "-9223372036854775808");
}

/* one rule for both forms: what the string form refuses, the integer form refuses too */
static void json_integer_chat_id_meets_the_string_rule(void **state)
{
	(void)state;
	expect_bad_chat_id("0");
	expect_bad_chat_id("-0");
	expect_bad_chat_id("\"0\"");
	expect_bad_chat_id("\"-0\"");
}

static void channel_username_of_5_and_32_chars_is_accepted(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"@abcde\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "@abcde");
	expect_valid("{\"chat_id\":\"@abcdefghijklmnopqrstuvwxyz_12345\",\"otp\":\"1234\"}", &r);
	assert_string_equal(r.chat_id, "@abcdefghijklmnopqrstuvwxyz_12345");
	assert_int_equal(strlen(r.chat_id), 33);
}

static void expire_seconds_absent_gives_default(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"1234\"}", &r);
	assert_int_equal(r.expire_seconds, 30);
}

static void expire_seconds_null_gives_default(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":null}", &r);
	assert_int_equal(r.expire_seconds, 30);
}

static void expire_seconds_min_and_max_bounds_are_accepted(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":5}", &r);
	assert_int_equal(r.expire_seconds, 5);
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":60}", &r);
	assert_int_equal(r.expire_seconds, 60);
}

static void otp_of_4_and_8_digits_is_accepted(void **state)
{
	struct send_otp_request r;

	(void)state;
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"0000\"}", &r);
	assert_string_equal(r.otp, "0000");
	expect_valid("{\"chat_id\":\"1\",\"otp\":\"12345678\"}", &r);
	assert_string_equal(r.otp, "12345678");
}

static void body_is_read_only_up_to_len(void **state)
{
	const char buf[] = "{\"chat_id\":\"77\",\"otp\":\"4321\"}GARBAGE";
	size_t len = strlen(buf) - strlen("GARBAGE");
	struct send_otp_request r;
	json_t *detail = (json_t *)1;

	(void)state;
	assert_int_equal(validate_send_otp(buf, len, &LIM, &r, &detail), 0);
	assert_null(detail);
	assert_string_equal(r.chat_id, "77");
	assert_string_equal(r.otp, "4321");
}

/* ---- missing fields and wrong types ----------------------------------------------------- */

static void empty_object_reports_both_required_fields_missing(void **state)
{
	json_t *detail;

	(void)state;
	detail = expect_invalid("{}", 2);
	check_item(detail, 0, "missing", "chat_id", "Field required");
	check_item(detail, 1, "missing", "otp", "Field required");
	json_decref(detail);
}

static void missing_otp_is_reported(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"expire_seconds\":10}", "missing", "otp",
			    "Field required");
}

static void missing_chat_id_is_reported(void **state)
{
	(void)state;
	expect_single_error("{\"otp\":\"1234\"}", "missing", "chat_id", "Field required");
}

static void non_string_chat_id_is_string_type(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":true,\"otp\":\"1234\"}", "string_type", "chat_id",
			    "Input should be a valid string");
	expect_single_error("{\"chat_id\":12.5,\"otp\":\"1234\"}", "string_type", "chat_id",
			    "Input should be a valid string");
	expect_single_error("{\"chat_id\":null,\"otp\":\"1234\"}", "string_type", "chat_id",
			    "Input should be a valid string");
	expect_single_error("{\"chat_id\":[\"1\"],\"otp\":\"1234\"}", "string_type", "chat_id",
			    "Input should be a valid string");
}

static void non_string_otp_is_string_type(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":1234}", "string_type", "otp",
			    "Input should be a valid string");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":null}", "string_type", "otp",
			    "Input should be a valid string");
}

static void expire_seconds_float_is_int_type(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":30.0}",
			    "int_type", "expire_seconds", "Input should be a valid integer");
}

static void expire_seconds_bool_is_int_type(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":true}",
			    "int_type", "expire_seconds", "Input should be a valid integer");
}

static void expire_seconds_string_is_int_type(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":\"30\"}",
			    "int_type", "expire_seconds", "Input should be a valid integer");
}

/* ---- value errors ----------------------------------------------------------------------- */

static void otp_with_non_digit_is_value_error(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"12a4\"}", "value_error", "otp",
			    "Value error, otp must contain only digits");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\" 1234\"}", "value_error", "otp",
			    "Value error, otp must contain only digits");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"-1234\"}", "value_error", "otp",
			    "Value error, otp must contain only digits");
}

static void otp_too_short_or_too_long_is_value_error(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"123\"}", "value_error", "otp",
			    "Value error, otp must be 4-8 digits long");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"123456789\"}", "value_error", "otp",
			    "Value error, otp must be 4-8 digits long");
}

static void expire_seconds_out_of_range_is_value_error(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":4}",
			    "value_error", "expire_seconds",
			    "Value error, expire_seconds must be between 5 and 60");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":61}",
			    "value_error", "expire_seconds",
			    "Value error, expire_seconds must be between 5 and 60");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"expire_seconds\":-30}",
			    "value_error", "expire_seconds",
			    "Value error, expire_seconds must be between 5 and 60");
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\","
			    "\"expire_seconds\":9223372036854775807}",
			    "value_error", "expire_seconds",
			    "Value error, expire_seconds must be between 5 and 60");
}

static void chat_id_with_letters_is_value_error(void **state)
{
	(void)state;
	expect_bad_chat_id("\"12x\"");
}

static void chat_id_empty_string_is_value_error(void **state)
{
	(void)state;
	expect_bad_chat_id("\"\"");
}

static void chat_id_lone_minus_is_value_error(void **state)
{
	(void)state;
	expect_bad_chat_id("\"-\"");
	expect_bad_chat_id("\"--5\"");
	expect_bad_chat_id("\"+5\"");
}

static void channel_username_too_short_or_too_long_is_value_error(void **state)
{
	(void)state;
	expect_bad_chat_id("\"@abc\"");
	expect_bad_chat_id("\"@abcd\"");
	expect_bad_chat_id("\"@abcdefghijklmnopqrstuvwxyz_123456\""); /* 33 after the @ */
	expect_bad_chat_id("\"@abc-def\"");
	expect_bad_chat_id("\"@\"");
}

static void chat_id_beyond_int64_is_value_error(void **state)
{
	(void)state;
	expect_bad_chat_id("\"9223372036854775808\"");
	expect_bad_chat_id("\"-9223372036854775809\"");
	expect_bad_chat_id("\"123456789012345678901234567890123456789012345678901234567890\"");
}

/* ---- extra fields, several errors -------------------------------------------------------- */

static void extra_field_is_extra_forbidden(void **state)
{
	(void)state;
	expect_single_error("{\"chat_id\":\"1\",\"otp\":\"1234\",\"foo\":1}", "extra_forbidden",
			    "foo", "Extra inputs are not permitted");
}

static void several_bad_fields_are_all_listed_in_field_order_then_extras(void **state)
{
	json_t *detail;

	(void)state;
	detail = expect_invalid("{\"zeta\":1,\"expire_seconds\":100,\"otp\":\"12\","
				"\"chat_id\":\"x\",\"alpha\":null}",
				5);
	check_item_full(detail, 0, "value_error", "chat_id", CHAT_ID_MSG_PREFIX, 1);
	check_item(detail, 1, "value_error", "otp", "Value error, otp must be 4-8 digits long");
	check_item(detail, 2, "value_error", "expire_seconds",
		   "Value error, expire_seconds must be between 5 and 60");
	check_item(detail, 3, "extra_forbidden", "zeta", "Extra inputs are not permitted");
	check_item(detail, 4, "extra_forbidden", "alpha", "Extra inputs are not permitted");
	json_decref(detail);
}

static void missing_and_wrong_type_and_extra_together(void **state)
{
	json_t *detail;

	(void)state;
	detail = expect_invalid("{\"expire_seconds\":\"x\",\"code\":\"1234\"}", 4);
	check_item(detail, 0, "missing", "chat_id", "Field required");
	check_item(detail, 1, "missing", "otp", "Field required");
	check_item(detail, 2, "int_type", "expire_seconds", "Input should be a valid integer");
	check_item(detail, 3, "extra_forbidden", "code", "Extra inputs are not permitted");
	json_decref(detail);
}

/* ---- body-level errors ------------------------------------------------------------------ */

static void expect_json_invalid(const char *body)
{
	expect_single_error(body, "json_invalid", NULL, "JSON decode error");
}

static void malformed_json_is_json_invalid(void **state)
{
	(void)state;
	expect_json_invalid("{");
	expect_json_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\",}");
	expect_json_invalid("");
	expect_json_invalid("chat_id=1&otp=1234");
}

static void trailing_garbage_is_json_invalid(void **state)
{
	(void)state;
	expect_json_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\"} x");
	expect_json_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\"}{}");
}

static void integer_beyond_int64_is_json_invalid(void **state)
{
	(void)state;
	expect_json_invalid("{\"chat_id\":9223372036854775808,\"otp\":\"1234\"}");
	expect_json_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\","
			    "\"expire_seconds\":99999999999999999999}");
}

static void duplicate_keys_are_json_invalid(void **state)
{
	(void)state;
	expect_json_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\",\"otp\":\"5678\"}");
}

static void array_body_is_model_attributes_type(void **state)
{
	(void)state;
	expect_single_error("[{\"chat_id\":\"1\",\"otp\":\"1234\"}]", "model_attributes_type",
			    NULL, "Input should be a valid dictionary or object to extract "
				  "fields from");
}

static void string_and_scalar_bodies_are_model_attributes_type(void **state)
{
	(void)state;
	expect_single_error("\"chat_id\"", "model_attributes_type", NULL, NULL);
	expect_single_error("42", "model_attributes_type", NULL, NULL);
	expect_single_error("null", "model_attributes_type", NULL, NULL);
}

/* ---- secrecy ---------------------------------------------------------------------------- */

static void assert_detail_does_not_contain(json_t *detail, const char *secret)
{
	char *text = json_dumps(detail, JSON_COMPACT);

	assert_non_null(text);
	if (strstr(text, secret) != NULL)
		print_error("detail leaks %s: %s\n", secret, text);
	assert_null(strstr(text, secret));
	free(text);
}

static void errors_never_echo_the_otp(void **state)
{
	json_t *detail;

	(void)state;
	/* a valid OTP next to a bad chat id */
	detail = expect_invalid("{\"chat_id\":\"bad!\",\"otp\":\"98765\"}", 1);
	assert_detail_does_not_contain(detail, "98765");
	json_decref(detail);
	/* an invalid OTP: its message must not quote it either */
	detail = expect_invalid("{\"chat_id\":\"1\",\"otp\":\"98765x\"}", 1);
	assert_detail_does_not_contain(detail, "98765");
	json_decref(detail);
	detail = expect_invalid("{\"chat_id\":\"1\",\"otp\":\"987654321\"}", 1);
	assert_detail_does_not_contain(detail, "987654321");
	json_decref(detail);
	/* a value in an extra field is not echoed (only its key is) */
	detail = expect_invalid("{\"chat_id\":\"1\",\"otp\":\"1234\",\"code\":\"55667788\"}", 1);
	assert_detail_does_not_contain(detail, "55667788");
	json_decref(detail);
}

static void no_error_item_has_an_input_key(void **state)
{
	json_t *detail, *item;
	size_t i;

	(void)state;
	detail = expect_invalid("{\"chat_id\":false,\"otp\":\"1\",\"expire_seconds\":1.5,"
				"\"x\":\"y\"}",
				4);
	json_array_foreach(detail, i, item) {
		assert_null(json_object_get(item, "input"));
		assert_null(json_object_get(item, "ctx"));
	}
	json_decref(detail);
}

static void failed_validation_leaves_no_otp_in_out(void **state)
{
	const char *body = "{\"chat_id\":\"bad!\",\"otp\":\"24680\"}";
	struct send_otp_request r;
	json_t *detail = NULL;
	size_t i;

	(void)state;
	assert_int_equal(validate_send_otp(body, strlen(body), &LIM, &r, &detail), -1);
	json_decref(detail);
	for (i = 0; i < sizeof r.otp; i++)
		assert_int_equal(r.otp[i], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_string_chat_id_otp_and_expire_are_copied_out),
		cmocka_unit_test(valid_negative_chat_id_string),
		cmocka_unit_test(valid_minus_100_channel_id),
		cmocka_unit_test(valid_int64_extremes_as_strings),
		cmocka_unit_test(json_integer_chat_id_is_normalised_to_decimal_text),
		cmocka_unit_test(json_integer_chat_id_meets_the_string_rule),
		cmocka_unit_test(channel_username_of_5_and_32_chars_is_accepted),
		cmocka_unit_test(expire_seconds_absent_gives_default),
		cmocka_unit_test(expire_seconds_null_gives_default),
		cmocka_unit_test(expire_seconds_min_and_max_bounds_are_accepted),
		cmocka_unit_test(otp_of_4_and_8_digits_is_accepted),
		cmocka_unit_test(body_is_read_only_up_to_len),
		cmocka_unit_test(empty_object_reports_both_required_fields_missing),
		cmocka_unit_test(missing_otp_is_reported),
		cmocka_unit_test(missing_chat_id_is_reported),
		cmocka_unit_test(non_string_chat_id_is_string_type),
		cmocka_unit_test(non_string_otp_is_string_type),
		cmocka_unit_test(expire_seconds_float_is_int_type),
		cmocka_unit_test(expire_seconds_bool_is_int_type),
		cmocka_unit_test(expire_seconds_string_is_int_type),
		cmocka_unit_test(otp_with_non_digit_is_value_error),
		cmocka_unit_test(otp_too_short_or_too_long_is_value_error),
		cmocka_unit_test(expire_seconds_out_of_range_is_value_error),
		cmocka_unit_test(chat_id_with_letters_is_value_error),
		cmocka_unit_test(chat_id_empty_string_is_value_error),
		cmocka_unit_test(chat_id_lone_minus_is_value_error),
		cmocka_unit_test(channel_username_too_short_or_too_long_is_value_error),
		cmocka_unit_test(chat_id_beyond_int64_is_value_error),
		cmocka_unit_test(extra_field_is_extra_forbidden),
		cmocka_unit_test(several_bad_fields_are_all_listed_in_field_order_then_extras),
		cmocka_unit_test(missing_and_wrong_type_and_extra_together),
		cmocka_unit_test(malformed_json_is_json_invalid),
		cmocka_unit_test(trailing_garbage_is_json_invalid),
		cmocka_unit_test(integer_beyond_int64_is_json_invalid),
		cmocka_unit_test(duplicate_keys_are_json_invalid),
		cmocka_unit_test(array_body_is_model_attributes_type),
		cmocka_unit_test(string_and_scalar_bodies_are_model_attributes_type),
		cmocka_unit_test(errors_never_echo_the_otp),
		cmocka_unit_test(no_error_item_has_an_input_key),
		cmocka_unit_test(failed_validation_leaves_no_otp_in_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
