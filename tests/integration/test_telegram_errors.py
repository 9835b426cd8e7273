"""How POST /send-otp answers when Telegram refuses, floods, fails or does not answer."""
import time

import pytest

from conftest import SLOW


def assert_nothing_stored(gw):
    assert gw.db_rows() == []


def test_chat_not_found_is_502_with_telegrams_description(gateway, bot):
    bot.config(unknown_chats=["404404"])
    r = gateway.send_otp({"chat_id": "404404", "otp": "1234"})
    assert r.status == 502, r
    assert r.json == {"success": False, "detail": "Bad Request: chat not found",
                      "telegram_error_code": 400}
    assert_nothing_stored(gateway)


def test_bot_blocked_is_502_with_403(gateway, bot):
    bot.config(blocked_chats=["403403"])
    r = gateway.send_otp({"chat_id": "403403", "otp": "1234"})
    assert r.status == 502, r
    assert r.json["telegram_error_code"] == 403
    assert r.json["detail"] == "Forbidden: bot was blocked by the user"
    assert_nothing_stored(gateway)


def test_telegram_429_is_503_with_its_retry_after(gateway, bot):
    bot.config(flood={"retry_after": 7, "count": 1})
    r = gateway.send_otp({"chat_id": "77", "otp": "1234"})
    assert r.status == 503, r
    assert r.headers["Retry-After"] == "7"
    assert r.json["success"] is False and r.json["telegram_error_code"] == 429
    assert_nothing_stored(gateway)
    assert gateway.db_rows("SELECT count(*) FROM rate_events WHERE scope IN ('chat', 'ip')") == [(0,)], "a 503 does not count"


def test_telegram_5xx_is_502(gateway, bot):
    bot.config(server_errors={"count": 1, "status": 502})
    r = gateway.send_otp({"chat_id": "78", "otp": "1234"})
    assert r.status == 502, r
    assert r.json["success"] is False
    assert_nothing_stored(gateway)


def test_unreachable_telegram_is_504_and_does_not_count(make_gateway, bot):
    from conftest import free_port
    gw = make_gateway(env={"TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}"})
    r = gw.send_otp({"chat_id": "79", "otp": "1234"})
    assert r.status == 504, r
    assert r.json == {"success": False, "detail": "Telegram is unreachable"}
    assert_nothing_stored(gw)
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat'") == [(0,)], \
        "nothing reached Telegram"


def test_connection_closed_without_answer_is_504_and_counts(gateway, bot):
    bot.config(down_s=30)  # accepts, reads, closes: the message may have been delivered
    r = gateway.send_otp({"chat_id": "79", "otp": "1234"})
    assert r.status == 504, r
    assert r.json == {"success": False, "detail": "Telegram closed the connection without answering"}
    assert_nothing_stored(gateway)
    assert gateway.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat'") == [(1,)]


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_slow_telegram_is_cut_at_the_timeout_with_504(make_gateway, bot):
    gw = make_gateway(env={"TELEGRAM_TIMEOUT_SECONDS": "1"})
    bot.config(hang_s=5)
    start = time.monotonic()
    r = gw.send_otp({"chat_id": "80", "otp": "1234"})
    elapsed = time.monotonic() - start
    assert r.status == 504, r
    assert r.json["detail"] == "Telegram did not answer in time"
    assert elapsed < 3 * SLOW, f"the timeout is 1 s, the answer took {elapsed:.1f} s"
    bot.config(hang_s=0)


@pytest.mark.sqlite_only
def test_unwritable_pending_row_withdraws_the_message_and_answers_500(gateway, bot):
    # a trigger makes the insert fail as a full or broken database would
    import sqlite3
    con = sqlite3.connect(gateway.db_path)
    con.execute("CREATE TRIGGER fail_insert BEFORE INSERT ON pending_deletions "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    con.commit()
    con.close()
    r = gateway.send_otp({"chat_id": "81", "otp": "1234"})
    assert r.status == 500, r
    assert r.json["success"] is False
    [msg] = bot.messages("81")
    assert msg["deleted_at"] is not None, "a sent code must never be left without its deletion"
