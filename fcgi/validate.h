/* validate.h — the POST /send-otp and POST /revoke-otp bodies: one table of fields each, checked
 * before any state is touched.
 *
 * Errors come out as FastAPI/pydantic 2 would write them ({"type","loc","msg"} items), without
 * pydantic's "input": an error never echoes what the client sent (it would echo the OTP). */
#ifndef OTP_VALIDATE_H
#define OTP_VALIDATE_H

#include <stddef.h>

#include <jansson.h>

#define OTP_MAX_DIGITS 8
#define CHAT_ID_MAX 48

struct send_otp_limits {
	int min_expire_s, max_expire_s, default_expire_s;
};

struct send_otp_request {
	char chat_id[CHAT_ID_MAX];        /* normalised: a JSON integer becomes its decimal text */
	char otp[OTP_MAX_DIGITS + 1];     /* secret: the caller wipes it */
	int expire_seconds;
};

/* Parses and checks body. Returns 0 with out filled, or -1 with *detail set to the JSON array of
 * every problem found (the caller owns it). The parse tree is freed (and, with the wiping
 * allocator installed, wiped) before return. */
int validate_send_otp(const char *body, size_t len, const struct send_otp_limits *lim,
		      struct send_otp_request *out, json_t **detail);

/* POST /revoke-otp: {"chat_id": any form /send-otp accepts, "message_id": a positive integer}. */
struct revoke_otp_request {
	char chat_id[CHAT_ID_MAX];        /* normalised as for /send-otp */
	long long message_id;
};

/* As validate_send_otp(), for the revoke body. */
int validate_revoke_otp(const char *body, size_t len, struct revoke_otp_request *out,
			json_t **detail);

#endif
