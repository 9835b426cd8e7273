/* revoke_claim.c — make bench's revoke figure: how long POST /revoke-otp's store step takes (the
 * claim: one write transaction, which every other writer waits for) with ROWS pending.
 *
 *   revoke_claim URL ROWS CLAIMS
 *
 * Fills the store named by URL (a SQLite path or OTP_STORE's redis URL; it must be empty) with
 * ROWS pending rows through store_pending_add(), as otp-fcgi writes them (numeric chats and
 * @usernames, their chat keys from policy_chat_subject(), an owner), then claims CLAIMS of them
 * picked at random, each looked up by the chat as a client may spell it (an @username in
 * another case), and prints one line: "claims N rows R median_us M p99_us P max_us X".
 * Exits 1 when a claim does not take its row (the figure would mean nothing). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <time.h>

#include "clock.h"
#include "policy.h"
#include "store.h"

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Row i's chat: every fourth an @username in mixed case, the others numeric ids. */
static void chat_of(long i, char *out, size_t outlen)
{
	if (i % 4 == 0)
		snprintf(out, outlen, "@Bench_Chan%ld", i);
	else
		snprintf(out, outlen, "%ld", 100000000L + i);
}

static int add_rows(struct store *s, long rows, int64_t delete_at)
{
	char chat[STORE_CHAT_ID_MAX], key[STORE_CHAT_ID_MAX];
	long i;

	for (i = 0; i < rows; i++) {
		struct pending_ref ref = { chat, key, i + 1, "bench" };

		chat_of(i, chat, sizeof chat);
		if (policy_chat_subject(chat, key, sizeof key) != 0 ||
		    store_pending_add(s, &ref, delete_at, NULL) != 0) {
			fprintf(stderr, "revoke_claim: adding row %ld: %s\n", i, store_strerror(s));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	char err[256] = "", chat[STORE_CHAT_ID_MAX], key[STORE_CHAT_ID_MAX];
	struct store *s = NULL;
	int64_t *took = NULL, t0;
	long rows, claims, i, n = 0, start;
	int rc = 1;

	if (argc != 4 || (rows = atol(argv[2])) <= 0 || (claims = atol(argv[3])) <= 0 ||
	    claims > rows) {
		fprintf(stderr, "usage: revoke_claim URL ROWS CLAIMS (0 < CLAIMS <= ROWS)\n");
		return 2;
	}
	if ((took = calloc((size_t)claims, sizeof *took)) == NULL)
		goto out;
	if ((s = store_open(argv[1], err, sizeof err)) == NULL) {
		fprintf(stderr, "revoke_claim: %s\n", err);
		goto out;
	}
	if (store_pending_count(s) != 0) {
		fprintf(stderr, "revoke_claim: the store is not empty\n");
		goto out;
	}
	if (add_rows(s, rows, clock_now_ms() + 3600 * 1000) != 0)
		goto out;
	srandom(1);
	start = random() % rows;
	for (i = 0; i < claims; i++) {
		/* rows spread over the table: a prime stride from a random start */
		long row = (start + i * 7919L) % rows;
		struct pending_ref ref = { chat, key, row + 1, "bench" };
		struct store_claim_request claim;
		struct pending p;
		size_t k;
		int got;

		chat_of(row, chat, sizeof chat);
		for (k = 0; chat[0] == '@' && chat[k] != '\0'; k++) /* as a client may spell it */
			chat[k] = (char)toupper((unsigned char)chat[k]);
		if (policy_chat_subject(chat, key, sizeof key) != 0)
			goto out;
		t0 = mono_us();
		claim = policy_claim_request(clock_now_ms(), 60000);
		got = store_pending_claim(s, &ref, &claim, &p);
		took[n] = mono_us() - t0;
		if (got == STORE_CLAIM_DUE)
			continue; /* the stride came round to a row claimed already */
		if (got != STORE_CLAIM_TAKEN) {
			fprintf(stderr, "revoke_claim: claim of row %ld: %d %s\n", row, got,
				got < 0 ? store_strerror(s) : "");
			goto out;
		}
		n++;
	}
	if (n == 0)
		goto out;
	qsort(took, (size_t)n, sizeof *took, cmp_i64);
	printf("claims %ld rows %ld median_us %lld p99_us %lld max_us %lld\n", n, rows,
	       (long long)took[n / 2], (long long)took[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1],
	       (long long)took[n - 1]);
	rc = 0;
out:
	if (s != NULL)
		store_close(s);
	free(took);
	return rc;
}
