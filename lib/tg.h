/* tg.h — the Telegram Bot API client (libcurl). The only module that sees the bot token and the
 * token-bearing method URLs ($TELEGRAM_API_BASE/bot$TOKEN/METHOD); nothing it returns or logs
 * contains either. One handle per thread: it keeps its HTTPS connection alive between calls.
 * The transport is here (tg.c: single calls; tg_batch.c: concurrent ones); what it sends and
 * how replies are read are pure modules of their own (tg_request.h, tg_reply.h). */
#ifndef OTP_TG_H
#define OTP_TG_H

#include <signal.h>
#include <stddef.h>

#include "tg_reply.h"   /* the results, and the reading of replies */
#include "tg_request.h" /* the request bodies */

struct tg;

/* Once per process, before threads start (curl_global_init is not thread-safe) and before
 * anything else calls OpenSSL (libcrypto included): OpenSSL's allocator is replaced by one that
 * wipes what it frees, which it allows only before its first allocation. Returns 0, or -1 when
 * that or libcurl's initialisation fails. */
int tg_global_init(void);
void tg_global_cleanup(void);

/* A client for api_base ("https://api.telegram.org") and token. NULL on failure (no memory). */
struct tg *tg_new(const char *api_base, const char *token, long timeout_ms);
void tg_free(struct tg *tg);

/* Trusts only the CA certificates in the PEM file ca_file (a private CA in front of a
 * self-hosted Bot API server) instead of the system's store. Verification itself is never
 * turned off. Returns 0, or -1 when out of memory. */
int tg_set_ca_file(struct tg *tg, const char *ca_file);

/* From now on sendMessage asks for paid broadcast (allow_paid_broadcast: up to 1,000 messages
 * per second, each paid in Telegram Stars from the bot's balance). */
void tg_set_paid_broadcast(struct tg *tg, int on);

/* sendMessage with parse_mode HTML and protect_content. text holds the OTP: every buffer this
 * call fills with it (the request and Telegram's echo of it) is wiped before return.
 * At most one sendMessage reaches the Bot API per call, whatever the connection does: libcurl
 * would repeat a POST on a fresh connection when a kept-alive one closes after the request went
 * out; this client refuses that (TG_NO_ANSWER instead). */
enum tg_status tg_send_message(struct tg *tg, const char *chat_id, const char *html_text,
			       struct tg_result *res);

/* deleteMessage. Unlike a send, libcurl may repeat it on a fresh connection when a kept-alive
 * one closes after the request went out: a second deletion is answered "not found". */
enum tg_status tg_delete_message(struct tg *tg, const char *chat_id, long long message_id,
				 struct tg_result *res);

/* Concurrent calls over one pool of kept-alive connections (curl's multi interface), for
 * otp-deleter: a real Bot API call takes 100-500 ms, so deletions one at a time fall behind. */
struct tg_batch;

/* A call of a batch that is over, as tg_batch_next_done() hands it back: finished, or dropped
 * without being started (a stop, or tg_batch_halt()), so that the caller can free its tag. */
struct tg_done {
	void *tag;               /* as the call was queued with */
	int started;             /* 0: dropped unstarted, res is empty */
	struct tg_result res;
};

/* A batch with tg's address, token and timeout that keeps `steady` connections between calls
 * and runs up to max_parallel calls at once while more are queued (the connections past the
 * steady ones close as their calls end). tg must outlive it. NULL when out of memory. */
struct tg_batch *tg_batch_new(struct tg *tg, int steady, int max_parallel);
void tg_batch_free(struct tg_batch *b);

/* Queues the deletion of ids[0..n) in chat_id: deleteMessage for one id, deleteMessages for
 * 2..TG_DELETE_MESSAGES_MAX. Returns 0, or -1 (n out of range, no memory). */
int tg_batch_add_delete(struct tg_batch *b, const char *chat_id, const long long *ids, int n,
			void *tag);

/* One step of the queued calls, for a caller that drives them from its own loop: starts queued
 * calls (none when stop is nonzero or the batch is halted), lets the running ones progress,
 * then waits at most wait_ms for network activity. The calls that ended are then read with
 * tg_batch_next_done(), after every step; calls queued meanwhile start at the next step.
 * Returns 1 while calls run or wait to start, 0 once the batch is idle: nothing runs and
 * nothing is queued, or stop / a halt and every call under way has finished; calls never
 * started are then dropped (read back with started == 0) and the halt is over. */
int tg_batch_step(struct tg_batch *b, int stop, int wait_ms);

/* Moves the next call that is over into *out, in the style of curl_multi_info_read(): returns
 * 1, or 0 when none is left to read. */
int tg_batch_next_done(struct tg_batch *b, struct tg_done *out);

/* Starts no further queued call until the batch is idle (e.g. Telegram answered 429); the
 * calls under way still finish. */
void tg_batch_halt(struct tg_batch *b);

#endif
