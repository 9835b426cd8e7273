"""What POST /send-otp makes of a Bot API that misbehaves: a connection closed after the request
went out (never a second sendMessage), and replies that cannot be believed (no usable message_id,
a token or control characters in the description, numbers out of range)."""
import json

import pytest

from conftest import TOKEN, TOKEN_SECRET


def send_calls(bot, chat_id):
    return [r for r in bot.requests("sendMessage") if str(r["params"].get("chat_id")) == chat_id]


def test_connection_closed_after_the_request_is_never_sent_twice(make_gateway, bot):
    # one thread per process: the second request reuses the first one's kept-alive connection,
    # which is where libcurl 7.88 would silently repeat the POST on a fresh connection
    gw = make_gateway(env={"OTP_FCGI_THREADS": "1"})
    assert gw.send_otp({"chat_id": "9101", "otp": "1234"}).status == 200
    bot.config(close_after_read={"count": 1, "methods": ["sendMessage"]})
    r = gw.send_otp({"chat_id": "9102", "otp": "5678"})
    calls = send_calls(bot, "9102")
    assert len(calls) == 1, f"the emulator saw {len(calls)} sendMessage calls for one request"
    assert calls[0]["status"] is None, "the emulator closed that call without an answer"
    assert r.status == 504, r
    assert r.json == {"success": False,
                      "detail": "Telegram closed the connection without answering"}
    assert gw.db_rows("SELECT chat_id FROM pending_deletions WHERE chat_id = '9102'") == []
    # it may have been delivered: it counts against the chat's limit, once
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat' "
                      "AND subject = '9102'") == [(1,)]
