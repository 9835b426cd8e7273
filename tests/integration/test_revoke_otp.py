"""POST /revoke-otp (issue #17): a pending message is deleted at once, exactly once; anything
else is refused without a Bot API call; when Telegram is paused or failing, otp-deleter takes
the row over at once (202).

Timings are read at the emulator (when the deletion reached it), as Telegram would see them."""
import os
import signal
import sqlite3
import threading
import time

import pytest

from conftest import SLOW, parse_iso, wait_until

DELETE_LATENCY = 0.2  # the emulator's deleteMessage latency in the timing test
# one Bot API call plus lighttpd, otp-fcgi and SQLite on a loaded 2-core machine
PROMPT = DELETE_LATENCY + 0.5 * SLOW
DELETES = ("deleteMessage", "deleteMessages")


def revoke(gw, payload, headers=None, content_type="application/json"):
    h = {"Content-Type": content_type}
    h.update(headers or {})
    return gw.request("POST", "/revoke-otp", body=payload, headers=h)


def delete_calls(bot):
    calls = [c for m in DELETES for c in bot.requests(m)]
    return sorted(calls, key=lambda c: c["at"])


def calls_for(bot, chat_id, message_id):
    """The deletion calls that named this message (deleteMessage or deleteMessages)."""
    out = []
    for c in delete_calls(bot):
        p = c["params"]
        ids = p.get("message_ids") or [p.get("message_id")]
        if str(p.get("chat_id")) == str(chat_id) and message_id in [int(i) for i in ids]:
            out.append(c)
    return out


def deleted_at(bot, chat_id, message_id):
    for m in bot.messages(chat_id):
        if m["message_id"] == message_id:
            return m["deleted_at"]
    raise AssertionError(f"message {message_id} not found in chat {chat_id}")


def sent(gw, chat_id, expire=60):
    r = gw.send_otp({"chat_id": chat_id, "otp": "1234", "expire_seconds": expire})
    assert r.status == 200, r
    return r.json


def test_revoke_right_after_send_deletes_at_once_and_never_again(gateway, bot):
    a = sent(gateway, "2001", expire=5)
    bot.config(method_latency_ms={"deleteMessage": DELETE_LATENCY * 1000})
    asked = time.time()
    r = revoke(gateway, {"chat_id": "2001", "message_id": a["message_id"]})
    assert r.status == 200, r
    assert set(r.json) == {"success", "chat_id", "message_id", "deleted_at"}
    assert r.json["success"] is True and '"success":true' in r.text
    assert (r.json["chat_id"], r.json["message_id"]) == ("2001", a["message_id"])

    gone = deleted_at(bot, "2001", a["message_id"])
    assert gone is not None, "answered 200 before Telegram deleted it"
    assert gone - asked <= PROMPT, f"the deletion reached Telegram {gone - asked:.3f} s after the revoke"
    assert gone < parse_iso(a["delete_at"]) - 3, "long before delete_at"
    assert abs(parse_iso(r.json["deleted_at"]) - gone) < 1.01
    assert gateway.db_rows() == [], "the row is gone with the message"

    # a later message of the chat is deleted by otp-deleter after the revoked one's delete_at:
    # by then otp-deleter has had its chance to delete the revoked one again, and must not have
    b = sent(gateway, "2001", expire=5)
    assert parse_iso(b["delete_at"]) >= parse_iso(a["delete_at"])
    wait_until(lambda: deleted_at(bot, "2001", b["message_id"]), 5 + 5 * SLOW, "the later deletion")
    assert len(calls_for(bot, "2001", a["message_id"])) == 1, "the revoked message was deleted twice"
    assert len(calls_for(bot, "2001", b["message_id"])) == 1


def test_revoke_twice_the_second_is_404_without_a_call(gateway, bot):
    a = sent(gateway, "2002")
    pair = {"chat_id": "2002", "message_id": a["message_id"]}
    assert revoke(gateway, pair).status == 200
    r = revoke(gateway, pair)
    assert r.status == 404, r
    assert set(r.json) == {"detail"} and "No pending message" in r.json["detail"]
    assert len(delete_calls(bot)) == 1


def test_only_pending_messages_of_this_gateway_can_be_revoked(gateway, bot):
    first, second = sent(gateway, "2003"), sent(gateway, "2003")   # ids 1 and 2 in chat 2003
    other = sent(gateway, "2004")                                     # id 1 in chat 2004
    foreign = bot.bot_call("sendMessage", {"chat_id": "2005", "text": "not ours"})["result"]
    assert other["message_id"] < second["message_id"]
    for pair in [{"chat_id": "2003", "message_id": 99},                      # unknown message
                 {"chat_id": "2004", "message_id": second["message_id"]},    # another chat's pair
                 {"chat_id": "-2003", "message_id": first["message_id"]},    # not the same chat
                 {"chat_id": "2005", "message_id": foreign["message_id"]}]:  # never sent by us
        r = revoke(gateway, pair)
        assert r.status == 404, (pair, r)
        assert r.json == {"detail": "No pending message with this chat_id and message_id "
                                    "(never sent by this gateway, or already deleted)"}
    assert delete_calls(bot) == [], "no Bot API call for a message that is not pending"
    assert deleted_at(bot, "2005", foreign["message_id"]) is None
    assert len(gateway.db_rows()) == 3, "nothing pending was touched"


def err(field, type_, msg):
    return {"type": type_, "loc": ["body", field] if field else ["body"], "msg": msg}


CHAT_MSG = ("Value error, chat_id must be a numeric string (can start with -), a JSON integer, "
            "or an @channelusername of 5-32 letters, digits or underscores")


@pytest.mark.parametrize("body, detail", [
    ({"chat_id": "2006"}, [err("message_id", "missing", "Field required")]),
    ({"message_id": 1}, [err("chat_id", "missing", "Field required")]),
    ({"chat_id": "2006", "message_id": "1"}, [err("message_id", "int_type", "Input should be a valid integer")]),
    ({"chat_id": "2006", "message_id": 1.0}, [err("message_id", "int_type", "Input should be a valid integer")]),
    ({"chat_id": "2006", "message_id": True}, [err("message_id", "int_type", "Input should be a valid integer")]),
    ({"chat_id": "2006", "message_id": 0}, [err("message_id", "greater_than", "Input should be greater than 0")]),
    ({"chat_id": "2006", "message_id": -5}, [err("message_id", "greater_than", "Input should be greater than 0")]),
    ({"chat_id": "20x6", "message_id": 1}, [err("chat_id", "value_error", CHAT_MSG)]),
    ({"chat_id": "2006", "message_id": 1, "otp": "1234"}, [err("otp", "extra_forbidden", "Extra inputs are not permitted")]),
    ('{"chat_id": "2006", "message_id": ', [err(None, "json_invalid", "JSON decode error")]),
    ('{"chat_id": "2006", "message_id": 1, "message_id": 1}', [err(None, "json_invalid", "JSON decode error")]),
    ('[1]', [err(None, "model_attributes_type",
                 "Input should be a valid dictionary or object to extract fields from")]),
])
def test_malformed_bodies_are_422_without_a_call(gateway, bot, body, detail):
    a = sent(gateway, "2006")
    assert a["message_id"] == 1
    r = revoke(gateway, body)
    assert r.status == 422, r
    assert r.json == {"detail": detail}
    assert delete_calls(bot) == []
    assert len(gateway.db_rows()) == 1


def test_size_content_type_and_method_are_checked_as_for_send_otp(gateway, bot):
    a = sent(gateway, "2007")
    pair = '{"chat_id": "2007", "message_id": %d}' % a["message_id"]
    r = revoke(gateway, pair + " " * 5000)
    assert (r.status, r.json) == (413, {"detail": "Request body larger than 4096 bytes"})
    r = revoke(gateway, pair, content_type="text/plain")
    assert (r.status, r.json) == (415, {"detail": "Content-Type must be application/json"})
    r = gateway.get("/revoke-otp")
    assert (r.status, r.headers["Allow"]) == (405, "POST")
    assert gateway.get("/revoke-otpX").status == 404
    assert delete_calls(bot) == []
    assert revoke(gateway, pair, content_type="application/vnd.api+json").status == 200


def test_api_key_is_required_when_set(make_gateway, bot):
    gw = make_gateway(env={"API_KEY": "revoke-key-123"})
    r = gw.request("POST", "/send-otp", body={"chat_id": "2008", "otp": "1234"},
                   headers={"Content-Type": "application/json", "X-API-Key": "revoke-key-123"})
    assert r.status == 200, r
    pair = {"chat_id": "2008", "message_id": r.json["message_id"]}
    for headers in [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}]:
        r = revoke(gw, pair, headers=headers)
        assert r.status == 401, (headers, r)
        assert r.json == {"detail": "Missing or invalid API key: send it in the X-API-Key header or as Authorization: Bearer <key>"}
    r = revoke(gw, "not json", headers={})
    assert r.status == 401, "the key is checked before the body"
    assert delete_calls(bot) == []
    assert revoke(gw, pair, headers={"Authorization": "Bearer revoke-key-123"}).status == 200
    assert len(delete_calls(bot)) == 1


@pytest.mark.parametrize("sent_as, revoked_as", [
    (2009, "2009"),
    ("2010", 2010),
    ("-1002011", -1002011),
    ("@Revoke_Chan", "@revoke_chan"),
])
def test_chat_id_in_any_accepted_form_is_matched_as_the_rate_limit_matches_it(gateway, bot, sent_as, revoked_as):
    a = sent(gateway, sent_as)
    r = revoke(gateway, {"chat_id": revoked_as, "message_id": a["message_id"]})
    assert r.status == 200, r
    assert r.json["chat_id"] == str(revoked_as)
    assert deleted_at(bot, str(sent_as), a["message_id"]) is not None
    assert gateway.db_rows() == []


def test_revoke_while_a_deletion_429_is_in_force_is_202_and_deleted_when_the_pause_ends(gateway, bot):
    a, b = sent(gateway, "2012"), sent(gateway, "2012")
    bot.config(flood={"retry_after": 2, "count": 1}, flood_methods=list(DELETES))
    r = revoke(gateway, {"chat_id": "2012", "message_id": a["message_id"]})
    assert r.status == 202, r
    assert r.json["success"] is True and "flood control" in r.json["detail"]
    [flood] = delete_calls(bot)
    assert flood["status"] == 429
    pause_end = flood["answered_at"] + 2

    r = revoke(gateway, {"chat_id": "2012", "message_id": b["message_id"]})
    assert r.status == 202, r
    assert "flood control" in r.json["detail"]
    assert time.time() < pause_end, "the second revoke came within the pause"
    assert len(delete_calls(bot)) == 1, "no Bot API call while the pause is in force"

    def both_gone():
        return all(deleted_at(bot, "2012", m["message_id"]) for m in (a, b))
    wait_until(both_gone, 2 + 3 * SLOW, "both deletions after the pause")
    later = delete_calls(bot)[1:]
    assert later and min(c["at"] for c in later) >= pause_end - 0.05, "nothing before the pause ended"
    for m in (a, b):
        assert deleted_at(bot, "2012", m["message_id"]) < parse_iso(m["delete_at"]) - 30
        assert len([c for c in calls_for(bot, "2012", m["message_id"]) if c["status"] == 200]) == 1
    wait_until(lambda: gateway.db_rows() == [], 5, "the rows to go")


def test_a_failing_bot_api_hands_the_row_to_the_deleter_at_once(gateway, bot):
    a = sent(gateway, "2013")
    bot.config(server_errors={"count": 1, "status": 502})
    r = revoke(gateway, {"chat_id": "2013", "message_id": a["message_id"]})
    assert r.status == 202, r
    assert "otp-deleter deletes the message at once" in r.json["detail"]
    gone = wait_until(lambda: deleted_at(bot, "2013", a["message_id"]), 3 * SLOW, "the deletion")
    assert gone < parse_iso(a["delete_at"]) - 30
    assert [c["status"] for c in calls_for(bot, "2013", a["message_id"])] == [502, 200]
    wait_until(lambda: gateway.db_rows() == [], 5, "the row to go")


@pytest.mark.sqlite_only
def test_a_row_the_deleter_may_already_have_is_left_to_it(gateway, bot):
    """Due within a second: otp-deleter may have read it already, so a second call could delete
    the message twice. The revoke answers 202 and makes no call."""
    mid = bot.bot_call("sendMessage", {"chat_id": "2014", "text": "x"})["result"]["message_id"]
    due_ms = int(time.time() * 1000) + 500
    con = sqlite3.connect(gateway.db_path, timeout=10)
    with con:
        con.execute("INSERT INTO pending_deletions (chat_id, chat_key, message_id, delete_at_ms,"
                    " next_try_ms, created_at_ms) VALUES ('2014', '2014', ?, ?, ?, ?)",
                    (mid, due_ms, due_ms, due_ms))
    con.close()
    r = revoke(gateway, {"chat_id": "2014", "message_id": mid})
    assert r.status == 202, r
    assert r.json["detail"] == "The message is already being deleted"
    gone = wait_until(lambda: deleted_at(bot, "2014", mid), 3 * SLOW, "the deletion")
    assert gone >= due_ms / 1000.0
    assert len(calls_for(bot, "2014", mid)) == 1


@pytest.mark.serial  # the lease is timed from the call's arrival: a stalled call would shift it
def test_otp_fcgi_killed_mid_revoke_leaves_the_row_to_the_deleter_when_the_claim_runs_out(make_gateway, bot):
    """The claim is a lease: a revoke that dies mid-call loses nothing, and nobody deletes
    while it may still be under way."""
    gw = make_gateway(env={"TELEGRAM_TIMEOUT_SECONDS": "1"})
    a = sent(gw, "2016")
    # the revoke's call hangs, then fails: the message is still there when its process is gone
    bot.config(method_latency_ms={"deleteMessage": 3000}, server_errors={"count": 1, "status": 502})
    answers = []
    t = threading.Thread(target=lambda: answers.append(
        _try(revoke, gw, {"chat_id": "2016", "message_id": a["message_id"]})))
    t.start()
    [call] = wait_until(lambda: delete_calls(bot), 5 * SLOW, "the revoke's call")
    for pid in gw.children_left():
        if pid != gw.deleter.pid:  # otp-fcgi only: otp-deleter shares the run directory
            os.kill(pid, signal.SIGKILL)
    t.join(30)
    assert not (answers and getattr(answers[0], "status", None) == 200), answers
    bot.config(method_latency_ms={})
    lease_end = call["at"] + 1 + 10  # TELEGRAM_TIMEOUT_SECONDS + the lease's margin
    gone = wait_until(lambda: deleted_at(bot, "2016", a["message_id"]), 11 + 5 * SLOW,
                      "otp-deleter's deletion after the claim ran out", interval=0.1)
    assert gone >= lease_end - 0.5, f"deleted {lease_end - gone:.2f} s before the claim ran out"
    assert gone < parse_iso(a["delete_at"]) - 30, "the revoke's instant, not delete_at, counts"
    # the first call's answer found no one to take it (or its 502 did): only otp-deleter's deleted
    assert [c["status"] in (None, 502) for c in calls_for(bot, "2016", a["message_id"])] == [True, False]
    assert calls_for(bot, "2016", a["message_id"])[1]["status"] == 200
    wait_until(lambda: gw.db_rows() == [], 5, "the row to go")


def _try(fn, *args):
    try:
        return fn(*args)
    except OSError as e:  # the connection died with its otp-fcgi
        return e


def test_revokes_are_counted_and_logged_with_a_masked_chat_id(gateway, bot):
    a = sent(gateway, "2015123")
    assert revoke(gateway, {"chat_id": "2015123", "message_id": a["message_id"]}).status == 200

    def counted():
        text = gateway.get("/metrics").text
        return 'otp_revoked_total{result="deleted"} 1' in text and \
            'http_requests_total{path="/revoke-otp",status="200"} 1' in text
    wait_until(counted, 5, "the revoke in /metrics")
    assert "# TYPE otp_revoked_total counter" in gateway.get("/metrics").text

    def logged():
        return [line for line in gateway.log_lines() if line.get("message") == "OTP revoked"]
    [line] = wait_until(logged, 5, "the revoke's log line")
    assert line["chat_id"] == "****123" and line["message_id"] == a["message_id"]
    assert line["result"] == "deleted"
    assert "2015123" not in gateway.log_text(), "chat ids are masked in every line"


@pytest.mark.sqlite_only
def test_a_version_3_database_is_migrated_in_place_and_its_rows_revocable(make_gateway, bot, workdir):
    """Schema v4 (chat_key, owner, the index the revoke looks up) over a database version 3 left:
    every pending row kept as it was, with its chat key, so a message sent before the upgrade can
    still be revoked by its @username in any case, and otp-deleter still deletes the others."""
    from pathlib import Path
    db = str(Path(workdir) / "v3.db")
    now_ms = int(time.time() * 1000)
    con = sqlite3.connect(db)
    con.executescript((Path(__file__).parent / "schema_v3.sql").read_text())
    con.execute("PRAGMA user_version = 3")
    rows = [(1, "@Old_Chan", 501, now_ms + 60000, now_ms + 60000, 0, now_ms - 1000),
            (2, "-100777", 502, now_ms + 2000, now_ms + 2000, 1, now_ms - 1000)]
    con.executemany("INSERT INTO pending_deletions (id, chat_id, message_id, delete_at_ms, "
                    "next_try_ms, attempts, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()

    gw = make_gateway(env={"OTP_DB_PATH": db})
    gw.db_path = db
    assert gw.db_rows("PRAGMA user_version") == [(4,)]
    assert sorted(gw.db_rows("SELECT id, chat_id, chat_key, message_id, delete_at_ms, "
                             "next_try_ms, attempts, created_at_ms, owner "
                             "FROM pending_deletions")) == \
        [(1, "@Old_Chan", "@old_chan", 501, now_ms + 60000, now_ms + 60000, 0, now_ms - 1000, None),
         (2, "-100777", "-100777", 502, now_ms + 2000, now_ms + 2000, 1, now_ms - 1000, None)]
    assert gw.db_rows("SELECT name FROM sqlite_master WHERE name LIKE '%before_v4%'") == []
    assert gw.db_rows("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                      "name = 'pending_deletions_by_chat_key'") == [(1,)]
    assert [r[0] for r in gw.db_rows("SELECT chat_id FROM pending_deletions_readable "
                                     "ORDER BY id")] == ["@Old_Chan", "-100777"]
    # a new file and a migrated one have the same table
    fresh = make_gateway()
    assert gw.db_rows("SELECT sql FROM sqlite_master WHERE name = 'pending_deletions'") == \
        fresh.db_rows("SELECT sql FROM sqlite_master WHERE name = 'pending_deletions'")

    r = revoke(gw, {"chat_id": "@old_chan", "message_id": 501})
    assert r.status in (200, 202), r  # the emulator never sent 501: deleted or "not found"
    assert [c["params"]["chat_id"] for c in calls_for(bot, "@Old_Chan", 501)] == ["@Old_Chan"]
    wait_until(lambda: gw.db_rows("SELECT id FROM pending_deletions") == [], 2 + 5 * SLOW,
               "the migrated rows deleted")
    assert len(calls_for(bot, "-100777", 502)) == 1


def test_revokes_count_against_the_per_address_limit_with_sends(make_gateway, bot):
    """A revoke is a write under the store's lock: it counts as a request of its address, found
    or not, so nobody can try message ids at will. 429 with Retry-After as a send's, no Bot API
    call; another address is not held."""
    gw = make_gateway(env={"RATE_LIMIT_PER_IP": "4"})
    a = gw.send_otp({"chat_id": "2101", "otp": "1234"}, source="127.0.0.21")
    b = gw.send_otp({"chat_id": "2102", "otp": "1234"}, source="127.0.0.21")
    assert a.status == 200 and b.status == 200, (a, b)
    assert gw.request("POST", "/revoke-otp", body={"chat_id": "2101", "message_id": 999999},
                      headers={"Content-Type": "application/json"},
                      source="127.0.0.21").status == 404
    r = gw.request("POST", "/revoke-otp", body={"chat_id": "2101", "message_id": a.json["message_id"]},
                   headers={"Content-Type": "application/json"}, source="127.0.0.21")
    assert r.status == 200, r  # the fourth request of 127.0.0.21
    calls = len(delete_calls(bot))

    pair = {"chat_id": "2102", "message_id": b.json["message_id"]}
    r = gw.request("POST", "/revoke-otp", body=pair, headers={"Content-Type": "application/json"},
                   source="127.0.0.21")
    assert r.status == 429, r
    assert r.json == {"detail": "Rate limit exceeded. Maximum 4 requests per minute from this IP address"}
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert len(delete_calls(bot)) == calls, "a refused revoke calls nobody"
    r = gw.send_otp({"chat_id": "2103", "otp": "1234"}, source="127.0.0.21")
    assert r.status == 429, "sends and revokes share the limit"
    # a malformed revoke is answered 422 and counts nothing (as for sends)
    r = gw.request("POST", "/revoke-otp", body={"chat_id": "2102"},
                   headers={"Content-Type": "application/json"}, source="127.0.0.22")
    assert r.status == 422
    r = gw.request("POST", "/revoke-otp", body=pair, headers={"Content-Type": "application/json"},
                   source="127.0.0.22")
    assert r.status == 200, r
    assert gw.db_rows() == []
