/* policy.c — rate-limit scopes and windows, the send queue, Telegram's pauses. See policy.h. */
#include "policy.h"

#include <ctype.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"

#define IP_WINDOW_MS (60 * 1000)
#define KEY_WINDOW_MS (60 * 1000) /* OTP_KEY_LIMIT_PER_MINUTE */

static const char *const scope_names[] = {
	[POLICY_SCOPE_CHAT] = "chat",
	[POLICY_SCOPE_IP] = "ip",
	[POLICY_SCOPE_KEY] = "key",
};

static const char *const pause_names[] = {
	[POLICY_PAUSE_SEND] = "send",
	[POLICY_PAUSE_DELETE] = "delete",
};

void policy_from_cfg(struct policy *p, const struct cfg *cfg)
{
	memset(p, 0, sizeof *p);
	p->per_chat = cfg->rate_limit_per_user;
	p->chat_window_ms = (int64_t)cfg->rate_limit_window_s * 1000;
	p->per_ip = cfg->rate_limit_per_ip;
	p->ip_window_ms = IP_WINDOW_MS;
	p->per_key = cfg->key_limit_per_minute;
	p->key_window_ms = KEY_WINDOW_MS;
	p->sends_per_second = cfg->max_sends_per_second;
	p->send_wait_ms = cfg->send_wait_ms;
	p->max_pause_ms = (int64_t)cfg->max_pause_s * 1000;
	p->beat_stale_ms = (int64_t)cfg->heartbeat_stale_s * 1000;
}

const char *policy_scope_name(enum policy_scope scope)
{
	return scope_names[scope];
}

const char *policy_pause_name(enum policy_pause_kind kind)
{
	return pause_names[kind];
}

int policy_chat_subject(const char *chat_id, char *out, size_t outlen)
{
	size_t i, n = strlen(chat_id);

	if (n >= outlen)
		return -1;
	for (i = 0; i <= n; i++)
		out[i] = chat_id[0] == '@' ? (char)tolower((unsigned char)chat_id[i]) : chat_id[i];
	return 0;
}

/* Milliseconds from now until at (µs), rounded up, at least 1. */
static int64_t ms_until(int64_t at_us, int64_t now_us)
{
	int64_t ms = (at_us - now_us + 999) / 1000;

	return ms < 1 ? 1 : ms;
}

/* The send queue's spacing, rounded up: the queue never runs faster than the budget. */
static int64_t spacing_us(const struct policy *p)
{
	return (1000000 + p->sends_per_second - 1) / p->sends_per_second;
}

/* How late a send may go after its instant: more would bunch it with the next ones. Half a
 * spacing keeps 30/s at most 31 in any second. At high rates (paid broadcast, 1 ms apart) a
 * thread's wake-up jitter is more than a spacing: there 10 ms are allowed (at most ~1% over in
 * a second), or late threads would give up so many turns that the queue fell behind. */
static int64_t lateness_allowed_us(const struct policy *p)
{
	int64_t half = spacing_us(p) / 2;

	return half > 10000 ? half : 10000;
}

/* A turn in the send queue asked for at now_us: taken only within the send wait, and held by
 * the send pause for at most max_pause_ms. No reservation puts the queue further ahead than the
 * latest instant plus one spacing: a queue beyond that was written under a clock that has since
 * stepped back, and starts again from now. */
static struct store_slot_request send_slot(const struct policy *p, int64_t now_us)
{
	int64_t latest_us = now_us + p->send_wait_ms * 1000;

	return (struct store_slot_request){ .now_us = now_us,
					    .spacing_us = spacing_us(p),
					    .latest_us = latest_us,
					    .pause_kind = pause_names[POLICY_PAUSE_SEND],
					    .pause_cap_us = now_us + p->max_pause_ms * 1000,
					    .reset_after_us = latest_us + spacing_us(p) };
}

struct store_claim_request policy_claim_request(int64_t now_ms, int64_t lease_ms)
{
	return (struct store_claim_request){ .now_ms = now_ms,
					     .margin_ms = POLICY_CLAIM_MARGIN_MS,
					     .lease_ms = lease_ms };
}

int policy_key_limit(const struct policy *p, const struct policy_client *client)
{
	if (client == NULL || client->key_owner == NULL || client->key_owner[0] == '\0')
		return 0;
	return client->key_limit > 0 ? client->key_limit : p->per_key;
}

int policy_admit(const struct policy *p, struct store *s, const char *chat_id,
		 const struct policy_client *client, int64_t now_ms, struct policy_admission *a)
{
	const char *remote_addr = client != NULL ? client->remote_addr : NULL;
	int key_limit = policy_key_limit(p, client);
	struct store_rate_rule rules[3];
	enum policy_scope scopes[3];
	struct store_slot_request slot;
	char subject[POLICY_SUBJECT_MAX];
	int n = 0;

	memset(a, 0, sizeof *a);
	if (policy_chat_subject(chat_id, subject, sizeof subject) != 0)
		return -1; /* validation bounds chat ids far below this */
	rules[n] = (struct store_rate_rule){ scope_names[POLICY_SCOPE_CHAT], subject, p->per_chat,
					     now_ms - p->chat_window_ms };
	scopes[n++] = POLICY_SCOPE_CHAT;
	if (p->per_ip > 0 && remote_addr != NULL && remote_addr[0] != '\0') {
		rules[n] = (struct store_rate_rule){ scope_names[POLICY_SCOPE_IP], remote_addr,
						     p->per_ip, now_ms - p->ip_window_ms };
		scopes[n++] = POLICY_SCOPE_IP;
	}
	if (key_limit > 0) {
		rules[n] = (struct store_rate_rule){ scope_names[POLICY_SCOPE_KEY], client->key_owner,
						     key_limit, now_ms - p->key_window_ms };
		scopes[n++] = POLICY_SCOPE_KEY;
	}
	slot = send_slot(p, now_ms * 1000);
	if (p->beat_stale_ms > 0) { /* the bounds of policy_heartbeat(), as instants */
		slot.beat_program = POLICY_DELETER_NAME;
		slot.beat_after_ms = now_ms - p->beat_stale_ms;
		slot.beat_before_ms = now_ms + POLICY_BEAT_FUTURE_MS;
	}
	if (store_rate_take(s, rules, n, &slot, now_ms, &a->taken) != 0)
		return -1;
	if (a->taken.beat_refused) {
		a->verdict = POLICY_DELETER_DOWN;
		a->beat_found = a->taken.beat_found;
		a->beat_age_ms = a->taken.beat_found ? now_ms - a->taken.beat_ms : 0;
	} else if (a->taken.refused_rule >= 0) {
		const struct store_rate_rule *r = &rules[a->taken.refused_rule];

		a->verdict = POLICY_RATE_LIMITED;
		a->scope = scopes[a->taken.refused_rule];
		a->retry_after_ms = a->taken.freeing_at_ms - r->expired_ms;
		if (a->retry_after_ms < 1)
			a->retry_after_ms = 1;
	} else if (a->taken.slot_refused) {
		a->verdict = a->taken.slot_paused ? POLICY_SENDS_PAUSED : POLICY_QUEUE_FULL;
		a->retry_after_ms = ms_until(a->taken.slot_us, slot.now_us);
	} else {
		a->verdict = POLICY_ADMITTED;
		a->send_at_us = a->taken.slot_us;
		a->waits = a->send_at_us > slot.now_us;
	}
	return 0;
}

int policy_admit_revoke(const struct policy *p, struct store *s,
			const struct policy_client *client, int64_t now_ms,
			struct policy_admission *a)
{
	const char *remote_addr = client != NULL ? client->remote_addr : NULL;
	struct store_rate_rule rule;

	memset(a, 0, sizeof *a);
	a->verdict = POLICY_ADMITTED;
	if (p->per_ip <= 0 || remote_addr == NULL || remote_addr[0] == '\0')
		return 0;
	rule = (struct store_rate_rule){ scope_names[POLICY_SCOPE_IP], remote_addr, p->per_ip,
					 now_ms - p->ip_window_ms };
	if (store_rate_take(s, &rule, 1, NULL, now_ms, &a->taken) != 0)
		return -1;
	if (a->taken.refused_rule >= 0) {
		a->verdict = POLICY_RATE_LIMITED;
		a->scope = POLICY_SCOPE_IP;
		a->retry_after_ms = a->taken.freeing_at_ms - rule.expired_ms;
		if (a->retry_after_ms < 1)
			a->retry_after_ms = 1;
	}
	return 0;
}

#define POLICY_REQUEUES_MAX 3

int policy_sleep_for_turn(const struct policy *p, struct policy_admission *a)
{
	clock_sleep_us(a->send_at_us - clock_now_us());
	return clock_now_us() - a->send_at_us > lateness_allowed_us(p) &&
	       a->requeues < POLICY_REQUEUES_MAX;
}

int policy_requeue(const struct policy *p, struct store *s, struct policy_admission *a)
{
	int64_t now = clock_now_us();
	struct store_slot_request slot = send_slot(p, now);
	struct store_rate_verdict v;

	a->requeues++;
	if (store_rate_take(s, NULL, 0, &slot, now / 1000, &v) != 0)
		return -1;
	if (v.slot_refused) {
		a->verdict = v.slot_paused ? POLICY_SENDS_PAUSED : POLICY_QUEUE_FULL;
		a->retry_after_ms = ms_until(v.slot_us, now);
		return 1;
	}
	a->send_at_us = v.slot_us;
	a->waits = a->send_at_us > now;
	return 0;
}

int policy_rereads_pause(const struct policy_admission *a)
{
	return a->waits;
}

int policy_release(struct store *s, const struct policy_admission *a)
{
	return store_rate_release(s, &a->taken);
}

int64_t policy_pause_end(const struct policy *p, int64_t now_ms, long long retry_after_s)
{
	/* a negative value can only be one that wrapped on its way in: take it as the longest */
	if (retry_after_s < 0 || retry_after_s > p->max_pause_ms / 1000)
		return now_ms + p->max_pause_ms;
	if (retry_after_s < 1)
		retry_after_s = 1;
	return now_ms + (int64_t)retry_after_s * 1000;
}

int policy_pause(const struct policy *p, struct store *s, enum policy_pause_kind kind,
		 long long retry_after_s, int64_t now_ms, const char *program, int64_t *until_ms)
{
	int64_t until = policy_pause_end(p, now_ms, retry_after_s);

	if (until_ms != NULL)
		*until_ms = until;
	return store_pause_extend(s, pause_names[kind], until, program);
}

int policy_paused_until(const struct policy *p, struct store *s, enum policy_pause_kind kind,
			int64_t now_ms, int64_t *until_ms)
{
	int64_t until = 0;

	if (store_pause_get(s, pause_names[kind], &until) < 0)
		return -1;
	if (until > now_ms + p->max_pause_ms)
		until = now_ms + p->max_pause_ms;
	*until_ms = until;
	return 0;
}

enum policy_beat policy_heartbeat(int64_t age_ms, int64_t stale_ms)
{
	if (age_ms < -POLICY_BEAT_FUTURE_MS)
		return POLICY_BEAT_FROM_THE_FUTURE;
	return age_ms <= stale_ms ? POLICY_BEAT_FRESH : POLICY_BEAT_STALE;
}

int policy_prune(const struct policy *p, struct store *s, int64_t now_ms)
{
	int chat, ip;

	chat = store_rate_prune(s, scope_names[POLICY_SCOPE_CHAT], now_ms - p->chat_window_ms);
	if (chat < 0)
		return -1;
	ip = store_rate_prune(s, scope_names[POLICY_SCOPE_IP], now_ms - p->ip_window_ms);
	if (ip < 0)
		return -1;
	return chat + ip;
}

enum policy_deletion policy_deletion_outcome(const struct tg_result *res)
{
	switch (res->status) {
	case TG_OK:
	case TG_NOT_FOUND:
		return POLICY_DELETION_DONE;
	case TG_REFUSED:
		if (res->error_code == 401 || res->error_code == 404)
			return POLICY_DELETION_RETRY;
		return POLICY_DELETION_GIVE_UP;
	default:
		return POLICY_DELETION_RETRY;
	}
}

int policy_after_deletion(const struct policy *p, struct store *s, const struct tg_result *res,
			  int64_t now_ms, const char *program, int64_t *until_ms)
{
	if (res->status != TG_RETRY_AFTER)
		return 0;
	/* retry_after is untrusted: policy_pause clamps it to TELEGRAM_MAX_PAUSE_SECONDS */
	return s == NULL ? -1
			 : policy_pause(p, s, POLICY_PAUSE_DELETE, res->retry_after_s, now_ms,
					program, until_ms);
}
