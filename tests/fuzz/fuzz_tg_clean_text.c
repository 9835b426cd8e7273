/* fuzz_tg_clean_text.c — libFuzzer: any bytes through tg_clean_text(), the cleaning every Bot API
 * description and curl message gets before it reaches a client or a log. The first byte sets the
 * output buffer's size (4..259). The result must be valid UTF-8 without control characters,
 * within the buffer and TG_DESCRIPTION_MAX, and hold no 4 bytes of the token's secret. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tg_reply.h"

#define TOKEN "123456789:FuzzSecretToken_abcdefghijklmnopqrstu"
#define SECRET "FuzzSecretToken_abcdefghijklmnopqrstu"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[260];
	const unsigned char *u = (const unsigned char *)out;
	size_t cap, n, i;
	json_t *j;

	if (size < 1)
		return 0;
	cap = 4 + data[0];
	memset(out, 0x5A, sizeof out);
	tg_clean_text(out, cap, (const char *)data + 1, size - 1, TOKEN);
	if (memchr(out, '\0', cap) == NULL)
		abort();
	n = strlen(out);
	if (n > TG_DESCRIPTION_MAX + 3 || (cap < sizeof out && out[cap] != 0x5A))
		abort();
	for (i = 0; i < n; i++)
		if (u[i] < 0x20 || u[i] == 0x7F || (u[i] == 0xC2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F))
			abort();
	for (i = 0; i + 4 <= sizeof SECRET - 1; i++)
		if (memmem(out, n, &SECRET[i], 4) != NULL)
			abort();
	j = json_string(out);
	if (j == NULL)
		abort();
	json_decref(j);
	return 0;
}
