"""What POST /send-otp and otp-deleter make of a Bot API that misbehaves: a connection closed after
the request went out (never a second sendMessage; a deletion may be repeated), and replies that
cannot be believed (no usable message_id, a token or control characters in the description,
numbers out of range)."""
import json
import time

import pytest

from conftest import SLOW, TOKEN, TOKEN_SECRET, wait_until


def send_calls(bot, chat_id):
    return [r for r in bot.requests("sendMessage") if str(r["params"].get("chat_id")) == chat_id]


def secret_pieces(n):
    """Every n-byte piece of the token's secret."""
    return {TOKEN_SECRET[i:i + n] for i in range(len(TOKEN_SECRET) - n + 1)}


def assert_no_token(text, piece=8):
    assert TOKEN not in text and TOKEN_SECRET not in text
    leaked = [p for p in secret_pieces(piece) if p in text]
    assert not leaked, f"pieces of the token's secret leaked: {leaked}"


def metric(gw, sample):
    for line in gw.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[1])
    return 0.0


def failed_count(gw, reason):
    return metric(gw, f'otp_failed_total{{reason="{reason}"}}')


def canned(bot, body, status=200, method="sendMessage", count=1):
    bot.config(canned_replies={"count": count, "methods": [method], "status": status,
                               "body": body})


def assert_refused_and_nothing_stored(gw, r, chat_id):
    assert r.json is not None and r.json["success"] is False, r
    assert gw.db_rows(f"SELECT * FROM pending_deletions WHERE chat_id = '{chat_id}'") == []
    assert_no_token(r.text, piece=4)
    assert_no_token(gw.log_text())


# ---- a connection closed after the request went out ---------------------------------------


def test_connection_closed_after_the_request_is_never_sent_twice(make_gateway, bot):
    # one thread per process: the second request reuses the first one's kept-alive connection,
    # which is where libcurl 7.88 would silently repeat the POST on a fresh connection
    gw = make_gateway(env={"OTP_FCGI_THREADS": "1"})
    assert gw.send_otp({"chat_id": "9101", "otp": "1234"}).status == 200
    bot.config(close_after_read={"count": 1, "methods": ["sendMessage"]})
    r = gw.send_otp({"chat_id": "9102", "otp": "5678"})
    calls = send_calls(bot, "9102")
    assert len(calls) == 1, f"the emulator saw {len(calls)} sendMessage calls for one request"
    # the case that matters: the request went over the first one's kept-alive connection
    assert calls[0]["client_port"] == send_calls(bot, "9101")[0]["client_port"]
    assert calls[0]["status"] is None, "the emulator closed that call without an answer"
    assert r.status == 504, r
    assert r.json == {"success": False,
                      "detail": "Telegram closed the connection without answering"}
    assert gw.db_rows("SELECT chat_id FROM pending_deletions WHERE chat_id = '9102'") == []
    # it may have been delivered: it counts against the chat's limit, once, and as one failure
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat' "
                      "AND subject = '9102'") == [(1,)]
    assert failed_count(gw, "telegram_no_answer") == 1
    assert metric(gw, "otp_sent_total") == 1


def test_a_deletion_closed_after_the_request_is_repeated_at_once(gateway, bot):
    # a deletion may be repeated (a second one is answered "not found"): libcurl's repeat on a
    # fresh connection is kept there, and spares the row a backoff
    r = gateway.send_otp({"chat_id": "9103", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200, r
    wait_until(lambda: [m for m in bot.messages("9103") if m["deleted_at"]], 10 * SLOW,
               "the first deletion")
    bot.config(close_after_read={"count": 1, "methods": ["deleteMessage"]})
    r = gateway.send_otp({"chat_id": "9104", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200, r
    wait_until(lambda: [m for m in bot.messages("9104") if m["deleted_at"]], 10 * SLOW,
               "the second deletion")
    calls = [c for c in bot.requests("deleteMessage")
             if str(c["params"].get("chat_id")) == "9104"]
    assert [c["status"] for c in calls] == [None, 200], calls
    first = [c for c in bot.requests("deleteMessage")
             if str(c["params"].get("chat_id")) == "9103"][0]
    assert calls[0]["client_port"] == first["client_port"], "over the kept-alive connection"
    assert calls[1]["at"] - calls[0]["at"] < 0.5 * SLOW, "repeated at once, not after a backoff"


# ---- replies that cannot be believed ------------------------------------------------------

SUCCESS_WITHOUT_A_USABLE_ID = [
    ("no_result", '{"ok":true}'),
    ("no_message_id", '{"ok":true,"result":{"chat":{"id":1},"date":1700000000}}'),
    ("zero", '{"ok":true,"result":{"message_id":0}}'),
    ("negative", '{"ok":true,"result":{"message_id":-42}}'),
    ("above_2_53", '{"ok":true,"result":{"message_id":9223372036854775807}}'),
    ("beyond_int64", '{"ok":true,"result":{"message_id":99999999999999999999999}}'),
    ("real", '{"ok":true,"result":{"message_id":42.5}}'),
    ("string", '{"ok":true,"result":{"message_id":"42"}}'),
    ("not_json", 'ok'),
]


@pytest.mark.parametrize("name,body", SUCCESS_WITHOUT_A_USABLE_ID,
                         ids=[n for n, _ in SUCCESS_WITHOUT_A_USABLE_ID])
def test_a_success_without_a_usable_message_id_is_a_502(gateway, bot, name, body):
    canned(bot, body)
    before = failed_count(gateway, "telegram_bad_reply")
    r = gateway.send_otp({"chat_id": "9201", "otp": "1234"})
    assert r.status == 502, r
    assert r.json["detail"] in ("Telegram answered ok without a valid message_id",
                                "unexpected reply from the Bot API (HTTP 200)"), r
    assert "message_id" not in r.json or r.json["message_id"] is None
    assert_refused_and_nothing_stored(gateway, r, "9201")
    assert len(send_calls(bot, "9201")) == 1
    assert failed_count(gateway, "telegram_bad_reply") == before + 1
    # it reached Telegram (and may have been delivered): it counts against the chat's limit
    assert gateway.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat' "
                           "AND subject = '9201'") == [(1,)]
    errors = [line for line in gateway.log_lines() if line.get("result") == "bad_reply"]
    assert errors and errors[-1]["level"] == "ERROR", "an unusable success is logged loudly"


def test_a_description_with_the_token_reaches_neither_client_nor_log(gateway, bot):
    description = (f"Bad Request: https://api.telegram.org/bot{TOKEN}/sendMessage "
                   f"secret={TOKEN_SECRET} piece={TOKEN_SECRET[3:12]}\u001b[2J\r\nInjected: yes"
                   "\u202e")
    canned(bot, json.dumps({"ok": False, "error_code": 400, "description": description}),
           status=400)
    r = gateway.send_otp({"chat_id": "9202", "otp": "1234"})
    assert r.status == 502, r
    assert r.json["telegram_error_code"] == 400
    detail = r.json["detail"]
    assert detail.startswith("Bad Request: https://api.telegram.org/bot123456789:***/sendMessage"), r
    assert not any(c < " " or c == "\x7f" or c == "\u202e" for c in detail), detail
    assert_refused_and_nothing_stored(gateway, r, "9202")
    assert_no_token(gateway.log_text())
    for line in gateway.log_text().splitlines():
        assert not line.startswith("Injected"), "a control character split a log line"


def test_a_ten_kilobyte_description_is_cut(gateway, bot):
    description = "Bad Request: " + "x" * 10240 + TOKEN
    canned(bot, json.dumps({"ok": False, "error_code": 400, "description": description}),
           status=400)
    r = gateway.send_otp({"chat_id": "9203", "otp": "1234"})
    assert r.status == 502, r
    detail = r.json["detail"]
    assert detail.startswith("Bad Request: xxx") and detail.endswith("\u2026"), detail
    assert len(detail.encode()) <= 203
    assert_refused_and_nothing_stored(gateway, r, "9203")
    assert max(len(line) for line in gateway.log_text().splitlines()) < 2000


def test_an_absurd_error_code_is_not_cut_to_an_int(gateway, bot):
    canned(bot, '{"ok":false,"error_code":99999999999,"description":"Bad Request: chat not found"}',
           status=400)
    r = gateway.send_otp({"chat_id": "9204", "otp": "1234"})
    assert r.status == 502, r
    assert r.json == {"success": False, "detail": "Bad Request: chat not found",
                      "telegram_error_code": 400}
    assert_refused_and_nothing_stored(gateway, r, "9204")
    # 4294967725 cut to 32 bits would be 429: flood control out of thin air
    canned(bot, '{"ok":false,"error_code":4294967725,"description":"Bad Request: x"}', status=400)
    r = gateway.send_otp({"chat_id": "9204", "otp": "1234"})
    assert r.status == 502 and r.json["telegram_error_code"] == 400, r
    assert "Retry-After" not in r.headers


@pytest.mark.parametrize("retry_after", [2**31, 10**9, 2**63 - 1])
def test_a_huge_retry_after_neither_wraps_nor_overflows(gateway, bot, retry_after):
    canned(bot, json.dumps({"ok": False, "error_code": 429,
                            "description": f"Too Many Requests: retry after {retry_after}",
                            "parameters": {"retry_after": retry_after}}), status=429)
    r = gateway.send_otp({"chat_id": "9205", "otp": "1234"})
    assert r.status == 503, r
    assert r.json["success"] is False and r.json["telegram_error_code"] == 429
    # a bounded, positive number of seconds (the pause itself is clamped where it is stored)
    assert 1 <= int(r.headers["Retry-After"]) <= 2147483, r.headers["Retry-After"]
    assert_refused_and_nothing_stored(gateway, r, "9205")
    # the pause holds: the next request does not reach Telegram
    r = gateway.send_otp({"chat_id": "9206", "otp": "1234"})
    assert r.status == 503, r
    assert 1 <= int(r.headers["Retry-After"]) <= 2147483
    assert send_calls(bot, "9206") == []
    until = gateway.db_rows("SELECT until_ms FROM telegram_pauses WHERE kind = 'send'")[0][0]
    assert until is not None and until > time.time() * 1000, "the pause did not wrap into the past"


# ---- the deleter's replies ----------------------------------------------------------------

def test_a_deletion_reply_without_result_true_keeps_the_row_for_a_retry(gateway, bot):
    r = gateway.send_otp({"chat_id": "9301", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200, r
    mid = r.json["message_id"]
    canned(bot, '{"ok":true,"result":false}', method="deleteMessage", count=1)
    # the unusable answer is retried (1 s backoff), and the retry deletes it
    msg = wait_until(lambda: [m for m in bot.messages("9301") if m["deleted_at"]], 15 * SLOW,
                     "the deletion after a retry")
    assert msg[0]["message_id"] == mid
    calls = [c for c in bot.requests("deleteMessage") if str(c["params"].get("chat_id")) == "9301"]
    assert len(calls) == 2, calls
    assert calls[1]["at"] - calls[0]["at"] >= 0.7, "retried after a backoff, not at once"
    wait_until(lambda: gateway.db_rows() == [], 5 * SLOW, "the row removed")
    lines = [line for line in gateway.log_lines() if line.get("result") == "bad_reply"]
    assert lines, "the unusable answer is logged"


def test_a_deletion_429_with_a_huge_retry_after_makes_no_call_storm(gateway, bot):
    r = gateway.send_otp({"chat_id": "9302", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200, r
    canned(bot, json.dumps({"ok": False, "error_code": 429,
                            "description": f"Too Many Requests: {TOKEN}",
                            "parameters": {"retry_after": 2**31}}),
           status=429, method="deleteMessage", count=1000)
    wait_until(lambda: bot.requests("deleteMessage"), 15 * SLOW, "the first deletion call")
    time.sleep(3)  # a window for a storm to show: 2^31 wrapped negative gave ~60 calls/s
    calls = bot.requests("deleteMessage")
    assert len(calls) == 1, f"{len(calls)} deleteMessage calls against a 429"
    # the row stays due; the deletions' pause holds it, in the future, not wrapped
    assert len(gateway.db_rows("SELECT id FROM pending_deletions")) == 1
    [(until,)] = gateway.db_rows("SELECT until_ms FROM telegram_pauses WHERE kind = 'delete'")
    assert until > time.time() * 1000, "the pause is in the future, not wrapped"
    assert_no_token(gateway.log_text())
