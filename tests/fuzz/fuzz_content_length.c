/* fuzz_content_length.c — libFuzzer: any CONTENT_LENGTH a web server passes through
 * fcgi_io_parse_content_length(). No crash; the verdict is exactly one of "absent" (-1, only
 * for an empty value), "bad", or a non-negative length that is the value's decimal reading. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char value[64];
	struct request req;

	if (size >= sizeof value)
		return 0;
	memcpy(value, data, size);
	value[size] = '\0';
	memset(&req, 0, sizeof req);
	fcgi_io_parse_content_length(value, &req);
	if (value[0] == '\0') {
		if (req.content_length != -1 || req.content_length_bad)
			abort();
	} else if (req.content_length_bad) {
		if (req.content_length != -1)
			abort();
	} else {
		/* accepted: a non-negative number whose digits are the value's (strtoll allows
		 * leading space, a sign and leading zeros, so compare the numbers, not the text) */
		if (req.content_length < 0)
			abort();
		if (strtoll(value, NULL, 10) != req.content_length)
			abort();
	}
	return 0;
}
