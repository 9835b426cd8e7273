/* policy.h — what the limits mean, in one place both programs use: the rate-limit scopes and
 * their windows, how a subject is normalised, the bot's send queue, and Telegram's pauses by
 * kind of call. The store below only stores; otp-fcgi asks policy_admit() before a send, and
 * otp-deleter asks policy_paused_until() before deleting and policy_prune() to sweep.
 *
 * Rate limits are exact rolling windows: at most N counted requests in any window, a refused
 * request told when the oldest counted one leaves (Retry-After). Each costs O(1) per request.
 *
 * The send queue is the generic cell rate algorithm, shared by every process through the store:
 * each send reserves the next free instant, spaced 1 / TELEGRAM_MAX_SENDS_PER_SECOND after the
 * previous reservation, first come first served, and sleeps until it; an instant further away
 * than TELEGRAM_SEND_WAIT_MS is refused with the exact wait. No polling.
 *
 * Telegram's 429 pauses only the kind of call that got it: a 429 on sendMessage pauses sends
 * (POLICY_PAUSE_SEND), one on deleteMessage(s) pauses deletions (POLICY_PAUSE_DELETE). Each is
 * clamped to TELEGRAM_MAX_PAUSE_SECONDS, kept in the store, and read from it every time.
 *
 * Errors: functions returning int answer -1 on a store failure, with the reason in
 * store_strerror(); the caller reports it. */
#ifndef OTP_POLICY_H
#define OTP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "tg.h"

struct cfg;

/* The limits in force, as plain values (policy_from_cfg() or a test fills them). */
struct policy {
	int per_chat;              /* OTPs per chat per chat_window_ms */
	int64_t chat_window_ms;
	int per_ip;                /* requests per client address per ip_window_ms; 0: off */
	int64_t ip_window_ms;
	int per_key;               /* OTPs per API key per key_window_ms, unless the key has its
				    * own limit; 0: off */
	int64_t key_window_ms;
	int sends_per_second;      /* the bot's send budget, every process together */
	int64_t send_wait_ms;      /* the longest a send waits for its instant */
	int64_t max_pause_ms;      /* the longest pause a 429 can impose */
	int64_t beat_stale_ms;     /* a send is admitted only while otp-deleter's heartbeat is at
				    * most this old (policy_heartbeat()); 0: not checked */
};

void policy_from_cfg(struct policy *p, const struct cfg *cfg);

/* The rate-limit scopes, in the order they are checked (the first full one answers). */
enum policy_scope { POLICY_SCOPE_CHAT, POLICY_SCOPE_IP, POLICY_SCOPE_KEY };

/* Who asks, for the per-address and per-key limits. */
struct policy_client {
	const char *remote_addr; /* "" or NULL: unknown, no per-address limit */
	const char *key_owner;   /* the API key's owner (apikeys.h); "" or NULL: no per-key limit */
	int key_limit;           /* the key's own limit; 0: the policy's per_key */
};

/* "chat", "ip", "key": the scope's name in the store. */
const char *policy_scope_name(enum policy_scope scope);

/* The programs' names: in logs, and where one reads the other's heartbeat or records who set
 * a pause. */
#define POLICY_DELETER_NAME "otp-deleter"
#define POLICY_FCGI_NAME "otp-fcgi"

#define POLICY_SUBJECT_MAX 64

/* The chat as a rate-limit subject: @usernames are case-insensitive, so "@Name" and "@name"
 * are one chat. Returns 0, or -1 if it does not fit in out (outlen bytes). */
int policy_chat_subject(const char *chat_id, char *out, size_t outlen);

/* What policy_admit() decided. */
enum policy_verdict {
	POLICY_ADMITTED,     /* send at send_at_us (policy_sleep_for_turn); events taken */
	POLICY_RATE_LIMITED, /* scope is full: 429; nothing taken */
	POLICY_QUEUE_FULL,   /* the send queue has no instant within the wait: 503; nothing taken */
	POLICY_SENDS_PAUSED, /* Telegram's pause on sends lasts longer than the wait: 503 */
	POLICY_DELETER_DOWN, /* otp-deleter's heartbeat is missing, stale or from the future: 503,
			      * before any limit is looked at; nothing taken */
};

struct policy_admission {
	enum policy_verdict verdict;
	enum policy_scope scope;     /* POLICY_RATE_LIMITED: the full scope */
	int64_t retry_after_ms;      /* refused: when to come back (≥ 1) */
	int64_t send_at_us;          /* admitted: the reserved instant (µs since the epoch) */
	int waits;                   /* admitted: the instant is later than the admission, so
				      * Telegram's pause is read again after the wait */
	int beat_found;              /* POLICY_DELETER_DOWN: a heartbeat exists, beat_age_ms old
				      * (negative: ahead of now) */
	int64_t beat_age_ms;
	int requeues;                /* admitted: new instants taken after waking too late */
	struct store_rate_verdict taken; /* admitted: the events, for policy_release() */
};

/* Checks otp-deleter's heartbeat (when p->beat_stale_ms is set), then the chat's, the client
 * address's and the API key's limits, and reserves the next send instant, in one store write,
 * at now_ms (the wall clock). Returns 0 with a->verdict set, or -1. */
int policy_admit(const struct policy *p, struct store *s, const char *chat_id,
		 const struct policy_client *client, int64_t now_ms, struct policy_admission *a);

/* Counts a revoke (POST /revoke-otp) against the client address's limit, the one sends count
 * against: a revoke costs a write under the store's lock, and a client trying message ids one
 * after another is held to the pace of its sends. No chat, key or send instant is involved.
 * One store write, none when the limit is off or the address unknown. Returns 0 with
 * a->verdict POLICY_ADMITTED or POLICY_RATE_LIMITED (scope, retry_after_ms), or -1. */
int policy_admit_revoke(const struct policy *p, struct store *s,
			const struct policy_client *client, int64_t now_ms,
			struct policy_admission *a);

/* A revoke leaves a row due within this margin to otp-deleter: a deleter that read the table
 * just before the claim may already be deleting it. */
#define POLICY_CLAIM_MARGIN_MS 1000

/* What a revoke at now_ms asks store_pending_claim() for: the row for lease_ms (0: handed to
 * otp-deleter at once), unless it is due within POLICY_CLAIM_MARGIN_MS. */
struct store_claim_request policy_claim_request(int64_t now_ms, int64_t lease_ms);

/* The limit that applies to client's key: its own, else the policy's; 0: none. */
int policy_key_limit(const struct policy *p, const struct policy_client *client);

/* Sleeps until the admitted instant (measured on the monotonic clock from now). Takes no store:
 * a caller that shares its stores gives its own back first. Returns 0 when it is time to send;
 * 1 when the thread woke later than half a spacing (at least 10 ms) after it (the machine
 * stalled it): it must not send late, in a burst with the sends after it, but take the next
 * free instant with policy_requeue() and sleep again. After 3 requeues it answers 0 whatever
 * (a machine that stalls it every time gets its send through late rather than never). */
int policy_sleep_for_turn(const struct policy *p, struct policy_admission *a);

/* Whether Telegram's pause must be read again before sending (policy_paused_until()): only
 * when the admission waited for its turn (the store read the pause when it admitted it). */
int policy_rereads_pause(const struct policy_admission *a);

/* Takes the next free send instant for an admission that woke too late (one store write).
 * Returns 0 (sleep again for it), 1 when no instant is free within the wait (a->verdict and
 * a->retry_after_ms say why; the events stay taken), -1 on a store error. */
int policy_requeue(const struct policy *p, struct store *s, struct policy_admission *a);

/* Gives back what an admission counted (nothing was sent after all). */
int policy_release(struct store *s, const struct policy_admission *a);

/* The kinds of Bot API calls that Telegram's flood control pauses independently. */
enum policy_pause_kind { POLICY_PAUSE_SEND, POLICY_PAUSE_DELETE };

/* "send", "delete". */
const char *policy_pause_name(enum policy_pause_kind kind);

/* The instant a 429 with retry_after_s received at now_ms pauses until: at least 1 s, at most
 * max_pause_ms (whatever retry_after_s holds: untrusted, maybe huge or negative). */
int64_t policy_pause_end(const struct policy *p, int64_t now_ms, long long retry_after_s);

/* Records Telegram's 429 (retry_after_s, untrusted) for every process: no call of kind before
 * policy_pause_end(). Extends, never shortens, a pause in force. *until_ms (may be NULL) gets
 * the end. Returns 0 or -1. */
int policy_pause(const struct policy *p, struct store *s, enum policy_pause_kind kind,
		 long long retry_after_s, int64_t now_ms, const char *program, int64_t *until_ms);

/* The end of the pause of kind as the store holds it now (0 when there is none), clamped to
 * now_ms + max_pause_ms (a hand-edited row cannot stop calls for longer). Returns 0 or -1. */
int policy_paused_until(const struct policy *p, struct store *s, enum policy_pause_kind kind,
			int64_t now_ms, int64_t *until_ms);

/* What Telegram's answer to a deletion (otp-deleter's, a revoke's, the undo of a send) means
 * for its row. */
enum policy_deletion {
	POLICY_DELETION_DONE,    /* deleted, or already gone: remove the row */
	POLICY_DELETION_GIVE_UP, /* can never succeed (too old, chat gone, bot blocked): log, remove */
	POLICY_DELETION_RETRY,   /* try again later */
};

/* The meaning of res. 401/404 (a wrong token or API base) are retried: they are the
 * operator's to fix, and the rows must survive until then. */
enum policy_deletion policy_deletion_outcome(const struct tg_result *res);

/* After a deletion call: a 429 pauses deletions for every process (policy_pause), whoever
 * made the call. *until_ms (may be NULL) gets the pause's end, untouched without a 429.
 * Returns 0, or -1 when the pause could not be recorded. */
int policy_after_deletion(const struct policy *p, struct store *s, const struct tg_result *res,
			  int64_t now_ms, const char *program, int64_t *until_ms);

/* A heartbeat more than this ahead of the reader's now cannot be a beat: a clock that ran ahead,
 * or a hand edit. It counts as stale, or it would keep sends open with nothing deleting. */
#define POLICY_BEAT_FUTURE_MS 3000

enum policy_beat { POLICY_BEAT_FRESH, POLICY_BEAT_STALE, POLICY_BEAT_FROM_THE_FUTURE };

/* What a heartbeat age_ms old (negative: ahead of now) means when beats go stale after
 * stale_ms: fresh only within [-POLICY_BEAT_FUTURE_MS, stale_ms]. */
enum policy_beat policy_heartbeat(int64_t age_ms, int64_t stale_ms);

/* Drops every scope's events that left their window (a subject's own requests drop them only
 * once they would decide: SQLite leaves those of a subject below its limit to this sweep).
 * Returns the number dropped, or -1. */
int policy_prune(const struct policy *p, struct store *s, int64_t now_ms);

#endif
