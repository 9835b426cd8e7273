"""Telegram as an adversary (issue 13): sends paced as a fair queue, measured at the emulator
(60 clients at 300 ms latency: test_concurrency.py); Telegram's 429 pauses only the kind of call
that got it; untrusted retry_after is clamped."""
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, STORE, wait_until

MAX_PAUSE_S = 3600  # TELEGRAM_MAX_PAUSE_SECONDS' default


def max_in_any_window(times, window):
    """The most arrivals in any closed interval [t, t + window]."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# Turns are reserved 1/30 s apart; a send reaches the emulator a few ms after its turn, and that
# delay varies. Under a sanitizer it varies by tens of ms: the window is narrowed there; with a
# Redis store (one more process on the same cores, a round trip between the turn and the send)
# a late send was seen 35 ms after its turn, next to an on-time one: narrowed likewise.
WINDOW = 1.0 if SLOW == 1 and STORE == "sqlite" else 0.9


def pause_row(gw, kind):
    rows = gw.db_rows(f"SELECT until_ms FROM telegram_pauses WHERE kind = '{kind}'")
    return rows[0][0] if rows else None


def test_sixteen_clients_sending_1000_otps_all_get_their_turn_within_the_budget(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_IP": "0"})  # the default budget: 30 sends/s

    def one(i):
        return gw.send_otp({"chat_id": str(400000 + i), "otp": "1234"})
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(1000)))
    statuses = [r.status for r in results]
    # 16 waiters need at most 16/30 s each: the 2 s wait is never exceeded in a fair queue
    assert statuses.count(200) == 1000, [r for r in results if r.status != 200][:3]
    arrivals = [c["at"] for c in bot.requests("sendMessage")]
    assert len(arrivals) == 1000
    most = max_in_any_window(arrivals, WINDOW)
    assert most <= 31, f"{most} sendMessage calls within {WINDOW} s at the emulator"


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_send_429_never_delays_deletions(make_gateway, bot):
    gw = make_gateway()
    sent = []
    for i in range(10):
        r = gw.send_otp({"chat_id": str(420000 + i), "otp": "1234", "expire_seconds": 5})
        assert r.status == 200, r
        sent.append((str(420000 + i), r.json["message_id"]))
    due = {(c, m): at / 1000.0 for c, m, at, _ in gw.db_rows()}
    bot.config(flood={"retry_after": 7, "count": 1}, flood_methods=["sendMessage"])
    r = gw.send_otp({"chat_id": "429000", "otp": "1234"})
    assert r.status == 503 and r.headers["Retry-After"] == "7", r
    paused_until = pause_row(gw, "send") / 1000.0
    assert max(due.values()) < paused_until, "the messages fall due during the send pause"

    def all_deleted():
        gone = {(m["chat_id"], m["message_id"]): m["deleted_at"] for m in bot.messages()
                if m["deleted_at"] is not None}
        return gone if all(k in gone for k in sent) else None
    gone = wait_until(all_deleted, 15 * SLOW, "the deletions")
    for key in sent:
        assert due[key] <= gone[key] <= due[key] + 1.0 * SLOW, \
            f"{key} deleted {gone[key] - due[key]:.3f} s after its delete_at"
    assert max(gone[k] for k in sent) < paused_until, "deleted while sends were paused"


@pytest.mark.parametrize("retry_after", [10 ** 9, 2 ** 31])
def test_a_huge_send_retry_after_is_clamped_and_health_says_why_sends_stop(make_gateway, bot,
                                                                           retry_after):
    gw = make_gateway()
    before = gw.send_otp({"chat_id": "430001", "otp": "1234", "expire_seconds": 5})
    assert before.status == 200
    bot.config(flood={"retry_after": retry_after, "count": 1}, flood_methods=["sendMessage"])
    start = time.time()
    r = gw.send_otp({"chat_id": "430002", "otp": "1234"})
    assert r.status == 503, r
    assert 3590 <= int(r.headers["Retry-After"]) <= MAX_PAUSE_S, r.headers["Retry-After"]
    until = pause_row(gw, "send") / 1000.0
    assert start + MAX_PAUSE_S - 10 <= until <= time.time() + MAX_PAUSE_S, until - start

    # no call storm: every later send is answered by us, without calling Telegram
    for i in range(20):
        r = gw.send_otp({"chat_id": str(430100 + i), "otp": "1234"})
        assert r.status == 503, r
        assert 3590 <= int(r.headers["Retry-After"]) <= MAX_PAUSE_S
        assert "flood control" in r.json["detail"]
    assert len(bot.requests("sendMessage")) == 2

    health = gw.get("/health")
    assert health.status == 503, health
    assert health.json["status"] == "degraded"
    assert health.json["failed_check"] == "telegram_sends"
    assert health.json["checks"]["telegram_sends"] == "paused"
    assert 3590 <= health.json["telegram_send_pause_seconds"] <= MAX_PAUSE_S
    assert "429" in health.json["detail"] and "sendMessage" in health.json["detail"]
    metrics = gw.get("/metrics").text
    [line] = [x for x in metrics.splitlines() if x.startswith('telegram_pause_seconds{kind="send"}')]
    assert 3590 <= float(line.split()[1]) <= MAX_PAUSE_S
    assert 'telegram_pause_seconds{kind="delete"} 0' in metrics

    # the send pause does not hold deletions
    wait_until(lambda: gw.db_rows() == [], 10 * SLOW, "the earlier message's deletion")


@pytest.mark.parametrize("retry_after", [10 ** 9, 2 ** 31])
@pytest.mark.sqlite_only
def test_a_huge_delete_retry_after_is_clamped_and_clearing_it_resumes_deletions(make_gateway, bot,
                                                                                retry_after):
    gw = make_gateway()
    r = gw.send_otp({"chat_id": "440001", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200
    bot.config(flood={"retry_after": retry_after, "count": 1},
               flood_methods=["deleteMessage", "deleteMessages"])
    wait_until(lambda: bot.requests("deleteMessage"), 10 * SLOW, "the deletion call")
    got_429 = time.time()
    until = wait_until(lambda: pause_row(gw, "delete"), 5, "the pause row") / 1000.0
    assert got_429 + MAX_PAUSE_S - 10 <= until <= time.time() + MAX_PAUSE_S, until - got_429
    assert pause_row(gw, "send") is None, "a delete 429 does not pause sends"

    # no call storm, and sending goes on
    time.sleep(2)
    assert len(bot.requests("deleteMessage")) == 1, bot.requests("deleteMessage")
    assert gw.send_otp({"chat_id": "440002", "otp": "1234", "expire_seconds": 60}).status == 200
    health = gw.get("/health")
    assert health.status == 200, health
    assert 3590 <= health.json["telegram_delete_pause_seconds"] <= MAX_PAUSE_S

    # the operator clears the pause: otp-deleter keeps no copy of it and deletes at once
    con = sqlite3.connect(gw.db_path, timeout=10)
    with con:
        con.execute("DELETE FROM telegram_pauses WHERE kind = 'delete'")
    con.close()
    cleared = time.time()
    wait_until(lambda: [m for m in bot.messages("440001") if m["deleted_at"]], 2 * SLOW,
               "the deletion after the pause was cleared")
    assert time.time() - cleared < 2 * SLOW


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_paid_broadcast_asks_telegram_for_it_and_sends_1000_a_second(make_gateway, bot):
    gw = make_gateway(env={"TELEGRAM_PAID_BROADCAST": "1", "OTP_FCGI_THREADS": "16"})
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: gw.send_otp({"chat_id": str(450000 + i), "otp": "1234"}),
                                range(200)))
    assert [r.status for r in results] == [200] * 200, [r for r in results if r.status != 200][:3]
    calls = bot.requests("sendMessage")
    assert all(c["params"].get("allow_paid_broadcast") is True for c in calls)
    # at 30/s, 200 sends would need 6.6 s and most would get 503 after the 2 s wait
    arrivals = sorted(c["at"] for c in calls)
    assert arrivals[-1] - arrivals[0] < 2.0 * SLOW


def test_without_paid_broadcast_sends_do_not_ask_for_it(gateway, bot):
    assert gateway.send_otp({"chat_id": "460000", "otp": "1234"}).status == 200
    [call] = bot.requests("sendMessage")
    assert "allow_paid_broadcast" not in call["params"]


@pytest.mark.sqlite_only
def test_a_version_1_database_is_migrated_in_place(make_gateway, bot, workdir):
    """The current schema (v2: the send queue, counts, pauses by kind; v3: events by millisecond)
    over a database version 1 left."""
    from pathlib import Path
    db = str(Path(workdir) / "v1.db")
    now_ms = int(time.time() * 1000)
    con = sqlite3.connect(db)
    con.executescript((Path(__file__).parent / "schema_v1.sql").read_text())
    con.execute("PRAGMA user_version = 1")
    con.executemany("INSERT INTO rate_events (scope, subject, at_ms) VALUES (?, ?, ?)",
                    [("chat", "500", now_ms - 2000), ("chat", "500", now_ms - 1000),
                     ("ip", "127.0.0.1", now_ms - 1000), ("send", "bot", now_ms - 10)])
    con.execute("INSERT INTO telegram_pause (id, until_ms, set_by) VALUES (1, ?, 'otp-fcgi')",
                (now_ms - 500,))
    con.commit()
    con.close()

    gw = make_gateway(env={"OTP_DB_PATH": db, "RATE_LIMIT_PER_USER": "2"})
    gw.db_path = db
    assert gw.db_rows("PRAGMA user_version") == [(4,)]
    assert sorted(gw.db_rows("SELECT scope, subject, events FROM rate_counts")) == \
        [("chat", "500", 2), ("ip", "127.0.0.1", 1)]
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'send'") == [(0,)]
    assert sorted(gw.db_rows("SELECT kind, until_ms FROM telegram_pauses")) == \
        [("delete", now_ms - 500), ("send", now_ms - 500)]
    assert gw.db_rows("SELECT name FROM sqlite_master WHERE name = 'telegram_pause'") == []
    # the migrated counts hold: chat 500 already sent 2 within the hour
    assert gw.send_otp({"chat_id": "500", "otp": "1234"}).status == 429
    assert gw.send_otp({"chat_id": "501", "otp": "1234"}).status == 200


@pytest.mark.sqlite_only
def test_a_version_2_database_is_migrated_in_place(make_gateway, bot, workdir):
    """Schema v3 (events by millisecond in rate_log) over a database version 2 left: every
    event kept with its time, the counts and the refusals' Retry-After as before."""
    from pathlib import Path
    db = str(Path(workdir) / "v2.db")
    now_ms = int(time.time() * 1000)
    con = sqlite3.connect(db)
    con.executescript((Path(__file__).parent / "schema_v2.sql").read_text())
    con.execute("PRAGMA user_version = 2")
    con.executemany("INSERT INTO rate_events (scope, subject, at_ms) VALUES (?, ?, ?)",
                    [("chat", "600", now_ms - 3000), ("chat", "600", now_ms - 3000),
                     ("chat", "601", now_ms - 2000), ("ip", "127.0.0.1", now_ms - 1000)])
    con.commit()
    assert con.execute("SELECT scope, subject, events FROM rate_counts ORDER BY 1, 2").fetchall() \
        == [("chat", "600", 2), ("chat", "601", 1), ("ip", "127.0.0.1", 1)]
    con.close()

    gw = make_gateway(env={"OTP_DB_PATH": db, "RATE_LIMIT_PER_USER": "2",
                           "RATE_LIMIT_WINDOW_SECONDS": "100"})
    gw.db_path = db
    assert gw.db_rows("PRAGMA user_version") == [(4,)]
    assert sorted(gw.db_rows("SELECT scope, subject, at_ms, events FROM rate_log")) == \
        [("chat", "600", now_ms - 3000, 2), ("chat", "601", now_ms - 2000, 1),
         ("ip", "127.0.0.1", now_ms - 1000, 1)]
    assert sorted(gw.db_rows("SELECT scope, subject, events FROM rate_counts")) == \
        [("chat", "600", 2), ("chat", "601", 1), ("ip", "127.0.0.1", 1)]
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat'") == [(3,)]
    assert gw.db_rows("SELECT name FROM sqlite_master WHERE name LIKE 'rate_events%' "
                      "AND type <> 'view'") == []
    # chat 600 is full until its two events of now - 3 s leave the 100 s window
    r = gw.send_otp({"chat_id": "600", "otp": "1234"})
    assert r.status == 429, r
    assert 96 <= int(r.headers["Retry-After"]) <= 98, dict(r.headers)
    assert gw.send_otp({"chat_id": "601", "otp": "1234"}).status == 200
    assert gw.db_rows("SELECT events FROM rate_counts WHERE scope = 'chat' AND subject = '601'") \
        == [(2,)]
