/* fuzz_tg_delete_reply.c — libFuzzer: any reply to otp-deleter's deleteMessage(s) calls, read as
 * the deleter reads it: tg_parse_reply() for the method, then policy_deletion_outcome() for what becomes of
 * the rows. The first two bytes are the HTTP status, the third picks deleteMessage or
 * deleteMessages, the rest is the body. A row may be taken as done only on Telegram's word
 * (result true, or "message to delete not found"); a pause is in range and never wraps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "policy.h"
#include "reap.h"
#include "tg.h"

#define TOKEN "123456789:FuzzSecretToken_abcdefghijklmnopqrstu"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tg_result res;
	enum tg_method method;
	enum policy_deletion outcome;
	json_t *root, *j;
	long status;

	if (size < 3)
		return 0;
	status = 100 + (data[0] << 8 | data[1]) % 500;
	method = data[2] & 1 ? TG_DELETE_MESSAGES : TG_DELETE_MESSAGE;
	memset(&res, 0x5A, sizeof res);
	tg_parse_reply(method, status, (const char *)data + 3, size - 3, TOKEN, &res);
	if (res.status > TG_BAD_REPLY || res.message_id != 0 ||
	    memchr(res.description, '\0', sizeof res.description) == NULL)
		abort();
	if (res.status == TG_RETRY_AFTER &&
	    (res.retry_after_s < 1 || res.retry_after_s > TG_RETRY_AFTER_MAX))
		abort();
	j = json_string(res.description); /* goes into the deleter's log lines */
	if (j == NULL)
		abort();
	json_decref(j);
	outcome = policy_deletion_outcome(&res);
	if (outcome != POLICY_DELETION_DONE && outcome != POLICY_DELETION_RETRY && outcome != POLICY_DELETION_GIVE_UP)
		abort();
	if (res.status == TG_OK) {
		/* done: only when the reply really said ok with result true */
		root = json_loadb((const char *)data + 3, size - 3, 0, NULL);
		if (!json_is_true(json_object_get(root, "ok")) ||
		    !json_is_true(json_object_get(root, "result")))
			abort();
		json_decref(root);
	}
	/* a reply we cannot read never removes a row */
	if ((res.status == TG_BAD_REPLY || res.status == TG_SERVER_ERROR ||
	     res.status == TG_RETRY_AFTER) && outcome != POLICY_DELETION_RETRY)
		abort();
	return 0;
}
