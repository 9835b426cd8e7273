/* fuzz_tg_reply.c — libFuzzer: any Bot API reply through tg_parse_reply(). The first byte picks
 * the method, the next two the HTTP status, the rest is the body. It must not crash, must
 * classify every reply, and what it hands on must hold the contract of struct tg_result: numbers
 * in range, a description fit for a client and a log, nothing of the token. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tg_reply.h"

#define TOKEN "123456789:FuzzSecretToken_abcdefghijklmnopqrstu"
#define SECRET "FuzzSecretToken_abcdefghijklmnopqrstu"

/* Aborts unless d is the clean text tg_reply.h promises. */
static void check_description(const char *d, size_t cap)
{
	size_t n, i;
	json_t *j;
	const unsigned char *u = (const unsigned char *)d;

	if (memchr(d, '\0', cap) == NULL)
		abort();
	n = strlen(d);
	if (n > TG_DESCRIPTION_MAX + 3)
		abort();
	for (i = 0; i < n; i++)
		if (u[i] < 0x20 || u[i] == 0x7F || (u[i] == 0xC2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F))
			abort();
	for (i = 0; i + 4 <= sizeof SECRET - 1; i++)
		if (memmem(d, n, &SECRET[i], 4) != NULL)
			abort();
	j = json_string(d); /* NULL unless valid UTF-8: it goes into JSON answers and log lines */
	if (j == NULL)
		abort();
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum tg_method methods[] = { TG_SEND_MESSAGE, TG_DELETE_MESSAGE,
						  TG_DELETE_MESSAGES };
	struct tg_result res;
	enum tg_method method;
	long status;

	if (size < 3)
		return 0;
	method = methods[data[0] % 3];
	status = 100 + (data[1] << 8 | data[2]) % 500;
	memset(&res, 0x5A, sizeof res); /* tg_parse_reply must set every field */
	tg_parse_reply(method, status, (const char *)data + 3, size - 3, TOKEN, &res);
	if (res.status > TG_BAD_REPLY || res.http_status != status)
		abort();
	check_description(res.description, sizeof res.description);
	if (res.status == TG_RETRY_AFTER &&
	    (res.retry_after_s < 1 || res.retry_after_s > TG_RETRY_AFTER_MAX))
		abort();
	if (res.status != TG_RETRY_AFTER && res.retry_after_s != 0)
		abort();
	if (res.error_code != 0 && (res.error_code < 400 || res.error_code > 599))
		abort();
	if (res.status == TG_OK && method == TG_SEND_MESSAGE &&
	    (res.message_id < 1 || res.message_id > TG_MESSAGE_ID_MAX))
		abort();
	if (res.status != TG_OK && res.message_id != 0)
		abort();
	if (res.status == TG_NOT_FOUND && method == TG_SEND_MESSAGE)
		abort();
	return 0;
}
