/* tg_assert.h — for the unit tests of the Bot API client: the token they use, and what a
 * description must be once cleaned. Include after cmocka.h. */
#ifndef OTP_TEST_TG_ASSERT_H
#define OTP_TEST_TG_ASSERT_H

#include <string.h>

#include <jansson.h>

#include "tg_reply.h"

#define SECRET_TOKEN "123456:SECRETTOKENabc"
#define TOKEN_SECRET_PART "SECRETTOKENabc"

/* A description fit for a client and a log: valid UTF-8, no control character, bounded, and
 * nothing of the token's secret as long as 4 bytes. */
static void assert_clean(const char *d)
{
	const char *secret = TOKEN_SECRET_PART;
	char piece[5];
	json_t *j;
	size_t i;

	assert_true(strlen(d) <= TG_DESCRIPTION_MAX + 3);
	for (i = 0; d[i] != '\0'; i++)
		assert_false((unsigned char)d[i] < 0x20 || d[i] == 0x7F);
	for (i = 0; i + 4 <= strlen(secret); i++) {
		memcpy(piece, secret + i, 4);
		piece[4] = '\0';
		assert_null(strstr(d, piece));
	}
	j = json_string(d); /* NULL unless valid UTF-8 */
	assert_non_null(j);
	json_decref(j);
}

#endif
