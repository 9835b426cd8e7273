/* fuzz_validate.c — libFuzzer: any body through validate_send_otp() and validate_revoke_otp().
 * They must not crash, must accept only what the contract allows, and the send errors must never
 * echo the OTP they were given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "secmem.h"
#include "validate.h"

static int digits_only(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The revoke body: a chat and a positive message id, or a non-empty list of errors. */
static void check_revoke(const uint8_t *data, size_t size)
{
	struct revoke_otp_request out;
	json_t *detail = NULL;

	if (validate_revoke_otp((const char *)data, size, &out, &detail) == 0) {
		if (out.message_id < 1 || out.chat_id[0] == '\0' || detail != NULL)
			abort();
		return;
	}
	if (!json_is_array(detail) || json_array_size(detail) == 0)
		abort();
	json_decref(detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct send_otp_limits lim = { 5, 60, 30 };
	struct send_otp_request out;
	json_t *detail = NULL, *item;
	char *text;
	size_t n, i;

	check_revoke(data, size);
	if (validate_send_otp((const char *)data, size, &lim, &out, &detail) == 0) {
		n = strlen(out.otp);
		if (n < 4 || n > 8 || !digits_only(out.otp) || out.expire_seconds < 5 ||
		    out.expire_seconds > 60 || out.chat_id[0] == '\0')
			abort();
		return 0;
	}
	if (!json_is_array(detail) || json_array_size(detail) == 0)
		abort();
	json_array_foreach(detail, i, item) {
		/* pydantic's "input" echoes what was sent: the OTP; ours never has it */
		if (json_object_get(item, "input") != NULL || !json_is_string(json_object_get(item, "msg")))
			abort();
	}
	text = json_dumps(detail, JSON_COMPACT);
	if (text == NULL)
		abort();
	secmem_json_free(text);
	json_decref(detail);
	return 0;
}
