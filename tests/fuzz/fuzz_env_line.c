/* fuzz_env_line.c — libFuzzer: any line through env_file_parse_line(). No crash; a parsed line
 * gives a NUL-terminated key of [A-Za-z0-9_] and a value that fit their buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[8192], key[64], value[256], err[64];
	size_t i;
	int r;

	if (size >= sizeof line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	r = env_file_parse_line(line, key, sizeof key, value, sizeof value, err, sizeof err);
	if (r == 1) {
		if (key[0] == '\0' || strlen(value) >= sizeof value)
			abort();
		for (i = 0; key[i] != '\0'; i++)
			if (!((key[i] >= 'A' && key[i] <= 'Z') || (key[i] >= 'a' && key[i] <= 'z') ||
			      (key[i] >= '0' && key[i] <= '9') || key[i] == '_'))
				abort();
	} else if (r < 0 && err[0] == '\0') {
		abort();
	}
	return 0;
}
