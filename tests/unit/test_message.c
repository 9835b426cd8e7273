/* test_message.c — fcgi/message.h: rendering MESSAGE_TEMPLATE. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "app.h"
#include "message.h"
#include "store.h"

static void default_like_template_gets_otp_and_seconds(void **state)
{
	char out[MESSAGE_MAX];
	const char *tmpl = "🔐 Your OTP is: <code>{otp}</code>\n\n⏱ Expires in {sec} seconds.\n\n"
			   "⚠️ This message will self-destruct.";

	(void)state;
	assert_int_equal(message_render(tmpl, "123456", 30, out, sizeof out), 0);
	assert_string_equal(out, "🔐 Your OTP is: <code>123456</code>\n\n⏱ Expires in 30 seconds."
				 "\n\n⚠️ This message will self-destruct.");
}

static void every_placeholder_occurrence_is_replaced(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(message_render("{otp}-{otp} {sec}/{sec}{otp}", "4711", 45, out, sizeof out),
			 0);
	assert_string_equal(out, "4711-4711 45/454711");
}

static void template_without_placeholders_is_copied_as_is(void **state)
{
	char out[256];
	const char *tmpl = "<b>Hello</b> &amp; \"bye\" {OTP} {otp {se c} {} {sec";

	(void)state;
	assert_int_equal(message_render(tmpl, "1234", 5, out, sizeof out), 0);
	assert_string_equal(out, tmpl);
}

static void template_html_is_not_escaped_but_values_are(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(message_render("<i>&\"{otp}\"</i>", "a&b<c>\"d'", 7, out, sizeof out), 0);
	assert_string_equal(out, "<i>&\"a&amp;b&lt;c&gt;&quot;d'\"</i>");
}

static void values_are_not_expanded_again(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(message_render("[{otp}] {sec}", "{sec}{otp}", 9, out, sizeof out), 0);
	assert_string_equal(out, "[{sec}{otp}] 9");
}

static void negative_seconds_are_rendered_as_decimal(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(message_render("{sec}", "1234", -5, out, sizeof out), 0);
	assert_string_equal(out, "-5");
}

static void empty_template_renders_empty(void **state)
{
	char out[8] = "junk";

	(void)state;
	assert_int_equal(message_render("", "1234", 5, out, sizeof out), 0);
	assert_string_equal(out, "");
}

static void html_escape_appends_at_len_and_escapes_all_four(void **state)
{
	char out[64] = "x";
	size_t len = 1;

	(void)state;
	assert_int_equal(message_html_escape("<&>\"ok'", out, sizeof out, &len), 0);
	assert_string_equal(out, "x&lt;&amp;&gt;&quot;ok'");
	assert_int_equal(len, strlen(out));
}

static void overflow_in_template_text_returns_minus_one(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(message_render("Your code is {otp}", "1234", 5, out, sizeof out), -1);
}

static void overflow_in_value_returns_minus_one(void **state)
{
	char out[10];

	(void)state;
	assert_int_equal(message_render("ab{otp}", "12345678", 5, out, sizeof out), -1);
	/* escaping makes the value longer than it looks */
	assert_int_equal(message_render("{otp}", "&&", 5, out, sizeof out), -1);
}

static void zero_capacity_returns_minus_one(void **state)
{
	char out[1] = { 'z' };

	(void)state;
	assert_int_equal(message_render("", "1234", 5, out, 0), -1);
	assert_int_equal(out[0], 'z');
}

static void exact_fit_succeeds_and_one_byte_less_fails(void **state)
{
	char out[16];

	(void)state;
	/* "ab1234" is 6 bytes plus the NUL */
	assert_int_equal(message_render("ab{otp}", "1234", 5, out, 7), 0);
	assert_string_equal(out, "ab1234");
	assert_int_equal(message_render("ab{otp}", "1234", 5, out, 6), -1);
	/* ending on template text: "1234!" is 5 bytes plus the NUL */
	assert_int_equal(message_render("{otp}!", "1234", 5, out, 6), 0);
	assert_string_equal(out, "1234!");
	assert_int_equal(message_render("{otp}!", "1234", 5, out, 5), -1);
}

static void html_escape_exact_fit(void **state)
{
	char out[8];
	size_t len = 0;

	(void)state;
	assert_int_equal(message_html_escape("&", out, 6, &len), 0);
	assert_string_equal(out, "&amp;");
	assert_int_equal(len, 5);
	len = 0;
	assert_int_equal(message_html_escape("&", out, 5, &len), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_like_template_gets_otp_and_seconds),
		cmocka_unit_test(every_placeholder_occurrence_is_replaced),
		cmocka_unit_test(template_without_placeholders_is_copied_as_is),
		cmocka_unit_test(template_html_is_not_escaped_but_values_are),
		cmocka_unit_test(values_are_not_expanded_again),
		cmocka_unit_test(negative_seconds_are_rendered_as_decimal),
		cmocka_unit_test(empty_template_renders_empty),
		cmocka_unit_test(html_escape_appends_at_len_and_escapes_all_four),
		cmocka_unit_test(overflow_in_template_text_returns_minus_one),
		cmocka_unit_test(overflow_in_value_returns_minus_one),
		cmocka_unit_test(zero_capacity_returns_minus_one),
		cmocka_unit_test(exact_fit_succeeds_and_one_byte_less_fails),
		cmocka_unit_test(html_escape_exact_fit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
