"""One clock for shared instants. Hosts sharing a Redis store take every instant they keep
(heartbeats, delete times, leases, pauses, rate events, the send queue) from Redis's clock, so a
host whose clock is 30 s ahead or behind (libfaketime, Debian's faketime package) neither keeps
sends open after every deleter died nor has a message deleted before the delete_at its client
was told. A heartbeat from the future counts as stale, on both backends."""
import calendar
import os
import sqlite3
import time

import pytest

from conftest import SLOW, STORE, RedisServer, parse_iso, wait_until

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
STALE_S = 4


def skewed(offset):
    """The environment that runs a program with its wall clock offset ("+30s", "-30s"); the
    monotonic clock (waits, timeouts) stays true. An ASan build refuses to start when a
    preloaded library comes before its runtime unless told not to check."""
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"}


def log_clock_offset(gw, program):
    """How far ahead of the real clock the latest log line of program was stamped (s)."""
    now = time.time()
    stamps = [line["timestamp"] for line in gw.log_lines() if line.get("program") == program]
    assert stamps, f"no log line of {program}"
    stamp = stamps[-1]
    at = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:-1])
    return at - now


@pytest.fixture
def redis(workdir):
    server = RedisServer(f"{workdir}/redis")
    yield server
    server.stop()


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME), reason="libfaketime is not installed "
                    "(Debian package faketime, .ci/install-deps)")
def test_hosts_30_s_apart_share_redis_clock(make_gateway, redis, bot):
    gws = {offset: make_gateway(env={"OTP_STORE": redis.url("skew:"),
                                     "OTP_HOST_NAME": f"host{offset}",
                                     "DELETER_HEARTBEAT_STALE_SECONDS": str(STALE_S),
                                     **skewed(offset)})
           for offset in ("+30s", "-30s")}
    answers = []
    for i in range(20):
        offset = "+30s" if i % 2 else "-30s"
        r = gws[offset].send_otp({"chat_id": str(930000 + i), "otp": "2468",
                                  "expire_seconds": 5})
        assert r.status == 200, (offset, r.text)
        answers.append(r)
    # the skew is real: each host's own lines are stamped 30 s off
    for offset, gw in gws.items():
        ahead = log_clock_offset(gw, "otp-fcgi")
        assert abs(ahead - int(offset[:-1])) < 5, (offset, ahead)
    # the answers are on Redis's clock (the real one here), whichever host answered
    for r in answers:
        assert abs(parse_iso(r.json["sent_at"]) - time.time()) < 10 * SLOW, r.json

    promised = {(r.json["chat_id"], r.json["message_id"]): parse_iso(r.json["delete_at"])
                for r in answers}

    def all_gone():
        msgs = [m for m in bot.messages() if str(m["chat_id"]).startswith("93")]
        return len(msgs) == 20 and all(m["deleted_at"] is not None for m in msgs) and msgs
    msgs = wait_until(all_gone, 5 + 15 * SLOW, "every message's deletion", interval=0.2)
    for m in msgs:
        key = (str(m["chat_id"]), m["message_id"])
        # measured at the emulator on the real clock
        assert m["deleted_at"] >= promised[key], f"{key} deleted before its delete_at"
        assert m["deleted_at"] >= m["sent_at"] + 5.0 - 0.001, f"{key} deleted early"

    # every deleter stops: sends stop on both hosts within the stale time (+ a margin for the
    # last beat's second and the polling)
    for gw in gws.values():
        gw.stop_deleter()
    stopped = time.monotonic()
    margin = 1.5 * SLOW
    closed = {}

    def both_closed():
        for offset, gw in gws.items():
            if offset not in closed and gw.send_otp(
                    {"chat_id": "939393", "otp": "1357"}).status == 503:
                closed[offset] = time.monotonic() - stopped
        return len(closed) == 2
    wait_until(both_closed, STALE_S + margin + 60, "sends to stop on both hosts", interval=0.2)
    for offset, took in closed.items():
        assert took <= STALE_S + margin, f"host {offset} kept sending {took:.1f} s"
    # and they stay closed (a beat written from a clock ahead would have reopened them)
    for gw in gws.values():
        r = gw.send_otp({"chat_id": "939394", "otp": "1357"})
        assert r.status == 503 and "otp-deleter" in r.json["detail"], r.text


def test_a_heartbeat_in_the_future_keeps_sends_closed_sqlite(make_gateway):
    """UPDATE heartbeats SET beat_ms = beat_ms + 3600000 once sends have stopped: still 503."""
    if STORE != "sqlite":
        pytest.skip("edits the SQLite file")
    gw = make_gateway(env={"DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    assert gw.send_otp({"chat_id": "5001", "otp": "1234"}).status == 200
    gw.stop_deleter()
    wait_until(lambda: gw.send_otp({"chat_id": "5002", "otp": "1234"}).status == 503,
               5 * SLOW, "sends to stop")
    with sqlite3.connect(gw.db_path) as db:
        db.execute("UPDATE heartbeats SET beat_ms = beat_ms + 3600000")
    r = gw.send_otp({"chat_id": "5003", "otp": "1234"})
    assert r.status == 503, r.text
    assert gw.get("/health").status == 503
    assert any("heartbeat is in the future" in line.get("message", "")
               for line in gw.log_lines())


def test_a_heartbeat_in_the_future_keeps_sends_closed_redis(make_gateway, redis):
    gw = make_gateway(env={"OTP_STORE": redis.url("future:"),
                           "DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    assert gw.send_otp({"chat_id": "5101", "otp": "1234"}).status == 200
    gw.stop_deleter()
    wait_until(lambda: gw.send_otp({"chat_id": "5102", "otp": "1234"}).status == 503,
               5 * SLOW, "sends to stop")
    beat = int(redis.cli("GET", "future:heartbeat:otp-deleter"))
    redis.cli("SET", "future:heartbeat:otp-deleter", beat + 3600000)
    r = gw.send_otp({"chat_id": "5103", "otp": "1234"})
    assert r.status == 503, r.text
    assert gw.get("/health").status == 503
    assert any("heartbeat is in the future" in line.get("message", "")
               for line in gw.log_lines())
    # a deleter that starts again writes Redis's now over it: sends open at once
    gw.start_deleter()
    wait_until(lambda: gw.healthy(), 5 * SLOW, "a fresh heartbeat")
    assert abs(int(redis.cli("GET", "future:heartbeat:otp-deleter")) / 1000 - time.time()) < 5
