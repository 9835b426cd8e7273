"""POST /send-otp through lighttpd + otp-fcgi: the contract the original's clients rely on."""
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import TOKEN_SECRET, parse_iso


def test_success_answers_every_field_and_sends_html_protected_message(gateway, bot):
    before = time.time()
    r = gateway.send_otp({"chat_id": "123456789", "otp": "483920", "expire_seconds": 30})
    assert r.status == 200, r
    body = r.json
    assert set(body) == {"success", "message_id", "sent_at", "delete_at", "chat_id"}
    assert body["success"] is True
    assert body["chat_id"] == "123456789"
    assert '"success":true' in r.text, "JSON must be compact like FastAPI's"
    sent, delete = parse_iso(body["sent_at"]), parse_iso(body["delete_at"])
    assert delete - sent == 30
    assert int(before) <= sent <= time.time()
    assert r.headers["Content-Type"] == "application/json"

    [msg] = bot.messages("123456789")
    assert msg["message_id"] == body["message_id"]
    assert msg["parse_mode"] == "HTML" and msg["protect_content"] is True
    assert "Your OTP is: 483920" in msg["text"]
    assert "Expires in 30 seconds" in msg["text"]
    [req] = bot.requests("sendMessage")
    assert "<code>483920</code>" in req["params"]["text"]

    [row] = gateway.db_rows()
    assert row[0] == "123456789" and row[1] == body["message_id"]
    assert row[2] >= delete * 1000, "the stored instant is never before the answered delete_at"


@pytest.mark.parametrize("chat_id, answered", [
    (123456789, "123456789"),
    ("-1001234567890", "-1001234567890"),
    ("-42", "-42"),
    ("@my_channel", "@my_channel"),
])
def test_accepted_chat_id_forms(gateway, bot, chat_id, answered):
    r = gateway.send_otp({"chat_id": chat_id, "otp": "1234"})
    assert r.status == 200, r
    assert r.json["chat_id"] == answered
    assert parse_iso(r.json["delete_at"]) - parse_iso(r.json["sent_at"]) == 30, "default expiry"
    assert bot.messages(answered)


def test_expire_seconds_null_means_default(make_gateway):
    gw = make_gateway(env={"DEFAULT_EXPIRE_SECONDS": "12"})
    r = gw.send_otp({"chat_id": "5", "otp": "1234", "expire_seconds": None})
    assert r.status == 200, r
    assert parse_iso(r.json["delete_at"]) - parse_iso(r.json["sent_at"]) == 12


def err(field, type_, msg):
    return {"type": type_, "loc": ["body", field] if field else ["body"], "msg": msg}


CHAT_MSG = ("Value error, chat_id must be a numeric string (can start with -), a JSON integer, "
            "or an @channelusername of 5-32 letters, digits or underscores")

VALIDATION_CASES = [
    ('{"chat_id": "1", "otp": "12a4"}', [err("otp", "value_error", "Value error, otp must contain only digits")]),
    ('{"chat_id": "1", "otp": "123"}', [err("otp", "value_error", "Value error, otp must be 4-8 digits long")]),
    ('{"chat_id": "1", "otp": "123456789"}', [err("otp", "value_error", "Value error, otp must be 4-8 digits long")]),
    ('{"chat_id": "1", "otp": 1234}', [err("otp", "string_type", "Input should be a valid string")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": 4}',
     [err("expire_seconds", "value_error", "Value error, expire_seconds must be between 5 and 60")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": 61}',
     [err("expire_seconds", "value_error", "Value error, expire_seconds must be between 5 and 60")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": 30.0}',
     [err("expire_seconds", "int_type", "Input should be a valid integer")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": "30"}',
     [err("expire_seconds", "int_type", "Input should be a valid integer")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": true}',
     [err("expire_seconds", "int_type", "Input should be a valid integer")]),
    ('{"chat_id": "12x", "otp": "1234"}', [err("chat_id", "value_error", CHAT_MSG)]),
    ('{"chat_id": "@abc", "otp": "1234"}', [err("chat_id", "value_error", CHAT_MSG)]),
    ('{"chat_id": "9223372036854775808", "otp": "1234"}', [err("chat_id", "value_error", CHAT_MSG)]),
    ('{"chat_id": "0123", "otp": "1234"}', [err("chat_id", "value_error", CHAT_MSG)]),
    ('{"chat_id": true, "otp": "1234"}', [err("chat_id", "string_type", "Input should be a valid string")]),
    ('{"otp": "1234"}', [err("chat_id", "missing", "Field required")]),
    ('{}', [err("chat_id", "missing", "Field required"), err("otp", "missing", "Field required")]),
    ('{"chat_id": "1", "otp": "1234", "expire": 30}',
     [err("expire", "extra_forbidden", "Extra inputs are not permitted")]),
    ('{"chat_id": "x", "otp": "x", "expire_seconds": 1, "z": 1}',
     [err("chat_id", "value_error", CHAT_MSG),
      err("otp", "value_error", "Value error, otp must contain only digits"),
      err("expire_seconds", "value_error", "Value error, expire_seconds must be between 5 and 60"),
      err("z", "extra_forbidden", "Extra inputs are not permitted")]),
    ('{"chat_id": "1", "otp": "1234"', [err(None, "json_invalid", "JSON decode error")]),
    ('', [err(None, "json_invalid", "JSON decode error")]),
    ('{"chat_id": "1", "chat_id": "2", "otp": "1234"}', [err(None, "json_invalid", "JSON decode error")]),
    ('{"chat_id": "1", "otp": "1234", "expire_seconds": 99999999999999999999}',
     [err(None, "json_invalid", "JSON decode error")]),
    ('["chat_id"]', [err(None, "model_attributes_type",
                         "Input should be a valid dictionary or object to extract fields from")]),
]


@pytest.mark.parametrize("body, detail", VALIDATION_CASES)
def test_validation_errors_are_422_listing_every_bad_field_and_change_nothing(gateway, bot, body, detail):
    r = gateway.send_otp(body)
    assert r.status == 422, r
    assert r.json == {"detail": detail}
    assert bot.requests() == [], "nothing may be sent"
    assert gateway.db_rows() == []
    assert gateway.db_rows("SELECT count(*) FROM rate_events") == [(0,)], "422 does not count"


def test_validation_error_never_echoes_the_otp(gateway):
    r = gateway.send_otp({"chat_id": "bad", "otp": "86420975"})
    assert r.status == 422
    assert "86420975" not in r.text


def test_wrong_method_is_405_with_allow(gateway):
    r = gateway.get("/send-otp")
    assert r.status == 405
    assert r.headers["Allow"] == "POST"
    assert r.json == {"detail": "Method Not Allowed"}
    r = gateway.request("DELETE", "/health")
    assert r.status == 405 and r.headers["Allow"] == "GET"


@pytest.mark.parametrize("path", ["/nope", "/send-otpX", "/send-otp/x", "/health/"])
def test_unknown_path_is_json_404(gateway, path):
    r = gateway.request("POST", path, body="{}", headers={"Content-Type": "application/json"})
    assert r.status == 404
    assert r.json == {"detail": "Not Found"}


def test_query_string_does_not_change_the_route(gateway):
    r = gateway.request("POST", "/send-otp?x=1", body={"chat_id": "9", "otp": "1234"},
                        headers={"Content-Type": "application/json"})
    assert r.status == 200, r


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(gateway, bot, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = gateway.request("POST", "/send-otp", body='{"chat_id": "1", "otp": "1234"}', headers=headers)
    assert r.status == 415, r
    assert "application/json" in r.json["detail"]
    assert bot.requests() == []


def test_json_content_type_with_charset_is_accepted(gateway):
    r = gateway.send_otp({"chat_id": "7", "otp": "1234"}, content_type="application/json; charset=utf-8")
    assert r.status == 200, r


@pytest.mark.parametrize("size", [4097, 20000, 200000])
def test_body_over_4k_is_json_413(gateway, bot, size):
    body = '{"chat_id": "1", "otp": "1234", "x": "' + "a" * size + '"}'
    r = gateway.send_otp(body)
    assert r.status == 413, r
    assert r.json["detail"] == "Request body larger than 4096 bytes"
    assert bot.requests() == []


def test_checks_run_in_order_413_before_415(gateway):
    r = gateway.request("POST", "/send-otp", body="x" * 5000, headers={"Content-Type": "text/plain"})
    assert r.status == 413


def test_root_and_health(gateway):
    r = gateway.get("/")
    assert r.status == 200
    assert r.json["version"] == "1.0.0" and r.json["docs"] == "/docs"
    assert r.json["health"] == "/health" and r.json["metrics"] == "/metrics"
    r = gateway.get("/health")
    assert r.status == 200, r
    assert '"status":"ok"' in r.text
    assert r.json["checks"] == {"database": "ok", "deleter": "ok", "telegram_sends": "ok"}
    assert r.json["mode"] == "live"
    parse_iso(r.json["timestamp"])


def test_token_and_otp_never_reach_the_logs(make_gateway, bot):
    gw = make_gateway()
    assert gw.send_otp({"chat_id": "555000111", "otp": "97531864", "expire_seconds": 5}).status == 200
    bot.config(unknown_chats=["32"])
    assert gw.send_otp({"chat_id": "32", "otp": "97531865"}).status == 502
    bot.config(down_s=30)
    assert gw.send_otp({"chat_id": "33", "otp": "97531866"}).status == 504
    bot.config(down_s=0)
    text = gw.log_text()
    assert "request" in text and "OTP sent successfully" in text
    for secret in (TOKEN_SECRET, "97531864", "97531865", "97531866"):
        assert secret not in text
    assert "555000111" not in text, "chat ids are masked"
    assert "******111" in text
    assert gw.log_lines(), "every line otp-fcgi writes is JSON"


def test_api_key_when_configured_is_checked_after_the_method_and_before_the_body(make_gateway, bot):
    gw = make_gateway(env={"API_KEY": "s3cret-key-0123456789"})
    body = {"chat_id": "70", "otp": "1234"}
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                    {"X-API-Key": "s3cret-key-012345678"}):
        r = gw.request("POST", "/send-otp", body=body,
                       headers={"Content-Type": "application/json", **headers})
        assert r.status == 401, (headers, r)
        assert r.json == {"detail": "Missing or invalid API key: send it in the X-API-Key header or as Authorization: Bearer <key>"}
    assert gw.request("GET", "/send-otp").status == 405, "405 comes before 401"
    r = gw.request("POST", "/send-otp", body="x" * 5000, headers={"Content-Type": "text/plain"})
    assert r.status == 401, "401 comes before 413 and 415"
    assert bot.requests() == []
    for headers in ({"X-API-Key": "s3cret-key-0123456789"},
                    {"Authorization": "Bearer s3cret-key-0123456789"}):
        r = gw.request("POST", "/send-otp", body=body,
                       headers={"Content-Type": "application/json", **headers})
        assert r.status == 200, r
    assert gw.get("/health").status == 200, "health needs no key"
    assert "s3cret-key" not in gw.log_text()


@pytest.mark.parametrize("path", ["/send-otp", "/revoke-otp"])
def test_body_nested_to_the_parsers_limit_is_a_clean_error(gateway, bot, path):
    # the deepest stack a worker thread reaches (jansson's 2048 levels, in a 4 KiB body) fits
    # in its stack (512 KiB, not the default 8 MiB): the process answers and lives on
    for body in ("[" * 2048 + "]" * 2048, '{"a":' * 800 + "1" + "}" * 800):
        r = gateway.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status < 500, r
        assert "detail" in r.json
    assert gateway.send_otp({"chat_id": "7", "otp": "1234"}).status == 200
    assert len(bot.requests()) == 1


@pytest.mark.sqlite_only
def test_a_pending_row_the_database_refuses_withdraws_only_its_own_send(make_gateway, bot):
    """Concurrent sends commit their pending rows together (group commit): the one row the
    database refuses answers 500 and its message is deleted at once; the sends beside it answer
    200 with their rows recorded."""
    gw = make_gateway(env={"TELEGRAM_MAX_SENDS_PER_SECOND": "10000", "RATE_LIMIT_PER_IP": "1000"})
    con = sqlite3.connect(gw.db_path)
    con.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON pending_deletions "
                "WHEN NEW.chat_id = '66007' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    con.commit()
    con.close()
    chats = [str(66000 + i) for i in range(32)]
    with ThreadPoolExecutor(len(chats)) as pool:
        answers = dict(zip(chats, pool.map(
            lambda c: gw.send_otp({"chat_id": c, "otp": "1234"}), chats)))
    refused = answers.pop("66007")
    assert refused.status == 500 and "withdrawn" in refused.json["detail"], refused
    assert [c for c, r in answers.items() if r.status != 200] == [], answers
    recorded = {c for (c,) in gw.db_rows("SELECT chat_id FROM pending_deletions")}
    assert recorded == set(answers)
    # the refused send's message was taken back, and no other
    deleted = [r["params"] for r in bot.requests("deleteMessage")]
    assert [str(p["chat_id"]) for p in deleted] == ["66007"], deleted
    [message] = bot.messages("66007")
    assert message["deleted_at"] is not None
