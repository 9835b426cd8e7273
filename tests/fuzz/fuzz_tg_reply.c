/* fuzz_tg_reply.c — libFuzzer: any Bot API reply through tg_parse_reply(). The first two bytes
 * are the HTTP status. It must not crash and must classify every reply. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tg_result res;
	long status;
	json_t *j;

	if (size < 2)
		return 0;
	status = 100 + (data[0] << 8 | data[1]) % 500;
	memset(&res, 0, sizeof res);
	tg_parse_reply(status, (const char *)data + 2, size - 2, &res);
	if (res.status > TG_NO_ANSWER || memchr(res.description, '\0', sizeof res.description) == NULL)
		abort();
	if (res.status == TG_RETRY_AFTER && res.retry_after_s < 1)
		abort();
	j = json_string(res.description); /* a description always goes into JSON answers */
	if (j == NULL)
		abort();
	json_decref(j);
	return 0;
}
