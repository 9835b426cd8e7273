"""Real Bot API latency (issue #9): one process serves many requests at once, the bot's send
budget holds across processes, and Telegram's 429 pauses every process."""
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SLOW, wait_until

# the send budget's timing bounds: run alone (tests/run-tests.sh)
pytestmark = pytest.mark.serial


def max_in_any_window(times, window):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def fire(gw, n, first_chat, threads=None):
    def one(i):
        return gw.send_otp({"chat_id": str(first_chat + i), "otp": "1234"})
    with ThreadPoolExecutor(threads or n) as pool:
        return list(pool.map(one, range(n)))


def test_sixty_concurrent_clients_at_300_ms_latency_within_the_send_budget(make_gateway, bot):
    gw = make_gateway()  # the defaults: 2 processes x 16 threads, 30 sends/s
    bot.config(method_latency_ms={"sendMessage": 300})
    start = time.monotonic()
    results = fire(gw, 60, 20000)
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == [200] * 60, [r for r in results if r.status != 200][:3]
    # 60 sends at 30/s need 2 budget seconds (the 31st waits for the first second to pass), each
    # then takes 0.3 s; 32 at once is no limit here. Blocking processes would need 60 x 0.3 / 2 = 9 s.
    bound = (60 / 30 + 0.3 + 1.5) * SLOW
    assert elapsed < bound, f"60 OTPs took {elapsed:.2f} s (bound {bound:.2f} s)"
    arrivals = [r["at"] for r in bot.requests("sendMessage")]
    assert len(arrivals) == 60
    # Turns are 1/30 s apart, so any second holds at most 31 turns (issue 13: 43 arrivals were
    # seen when slots were taken 30 at a time). A send that wakes late takes a new turn rather
    # than bunch up. Between a turn and its request's arrival lie the sending thread's run to
    # its write and the loopback: on a loaded machine a send on time may leave up to 50 ms later
    # than the turn 31 after it (more under a sanitizer, whose stalls are longer).
    window = 0.95 if SLOW == 1 else 0.9
    assert max_in_any_window(arrivals, window) <= 31


def test_telegram_429_pauses_every_process(make_gateway, bot):
    gw = make_gateway(env={"OTP_FCGI_THREADS": "4"})
    bot.config(flood={"retry_after": 3, "count": 1}, flood_methods=["sendMessage"])
    first = gw.send_otp({"chat_id": "30000", "otp": "1234"})
    assert first.status == 503 and first.headers["Retry-After"] == "3", first
    results = fire(gw, 8, 30001)
    statuses = {r.status for r in results}
    assert statuses <= {200, 503}, [r for r in results if r.status not in (200, 503)]
    for r in results:
        if r.status == 503:
            assert 1 <= int(r.headers["Retry-After"]) <= 3
    [flood] = [c for c in bot.requests("sendMessage") if c["status"] == 429]
    later = [c for c in bot.requests("sendMessage") if c["at"] > flood["answered_at"]]
    assert all(c["at"] >= flood["answered_at"] + 3 - 0.05 for c in later), \
        "a send went out during Telegram's pause"
    assert not [c for c in later if c["status"] == 429], "no burst of 429s"
    # after the pause (its end read on the emulator's clock), sending works again
    time.sleep(max(0.0, flood["answered_at"] + 3 - time.time()))
    wait_until(lambda: gw.send_otp({"chat_id": "30100", "otp": "1234"}).status == 200,
               1.0 * SLOW, "a send after the pause")


def test_a_full_budget_delays_then_answers_503_with_retry_after(make_gateway, bot):
    # 2 sends/s: turns 0.5 s apart. With a 0.6 s wait, of 6 concurrent requests the first goes at
    # once, the second waits its turn (0.5 s), the others' turns (1 s, 1.5 s, ...) are too far.
    gw = make_gateway(env={"TELEGRAM_MAX_SENDS_PER_SECOND": "2", "TELEGRAM_SEND_WAIT_MS": "600"})
    fired = time.time()
    results = fire(gw, 6, 31000)
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 200, 503, 503, 503, 503], statuses
    for r in (r for r in results if r.status == 503):
        assert r.headers["Retry-After"] == "1" and "sending limit" in r.json["detail"], \
            (r, dict(r.headers))
    sends = sorted(c["at"] for c in bot.requests("sendMessage"))
    assert len(sends) == 2
    # the first turn came no earlier than the requests: the second is 0.5 s after it
    assert sends[1] >= fired + 0.5, "the second send waited for its turn"
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat'") == [(2,)], \
        "a 503 does not count against the client's limit"


# otp-fcgi opens at most this many stores per process (fcgi/main.c STORE_POOL_MAX), plus the
# metrics thread's own.
STORE_POOL_MAX = 16


def store_connections(gw, pid):
    """The store connections otp-fcgi process pid holds: its descriptors on the SQLite file, or
    its TCP connections to the Redis server."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass  # closed meanwhile
    if gw.redis is None:
        return sum(1 for t in targets.values() if t == gw.db_path)
    to_redis = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == gw.redis.port:
                to_redis.add(f"socket:[{fields[9]}]")
    return sum(1 for t in targets.values() if t in to_redis)


def otp_fcgi_pids(gw):
    return [pid for pid in gw.children_left()
            if Path(f"/proc/{pid}/comm").read_text().strip() == "otp-fcgi"]


def test_sends_waiting_on_telegram_hold_no_store(make_gateway, bot):
    # 64 sends at once, each waiting a second or more on the Bot API: the store is needed only
    # for the store calls around it, so the processes hold a few connections, not one per thread
    latency = 1.5 * SLOW
    gw = make_gateway(env={"OTP_FCGI_THREADS": "64", "TELEGRAM_MAX_SENDS_PER_SECOND": "1000",
                           "TELEGRAM_TIMEOUT_SECONDS": str(int(latency) + 5)})
    bot.config(method_latency_ms={"sendMessage": latency * 1000})
    with ThreadPoolExecutor(1) as background:
        sending = background.submit(fire, gw, 64, 40000)

        def all_waiting():
            calls = bot.requests("sendMessage")
            return len(calls) == 64 and all(c["answered_at"] is None for c in calls)
        wait_until(all_waiting, latency, "64 sends waiting on the Bot API")
        held = {pid: store_connections(gw, pid) for pid in otp_fcgi_pids(gw)}
        results = sending.result()
    assert [r.status for r in results] == [200] * 64, [r for r in results if r.status != 200][:3]
    assert len(held) == 2, held
    assert all(1 <= n <= STORE_POOL_MAX + 1 for n in held.values()), held
    assert sum(held.values()) < 64, held


def test_stores_come_back_after_failures(make_gateway, bot):
    # every failure path gives its store back: more failures than the pool holds stores, then a
    # send still finds one (a store kept would leave later requests waiting for ever)
    gw = make_gateway(env={"OTP_FCGI_THREADS": "2"})
    failures = 3 * STORE_POOL_MAX  # per process at least STORE_POOL_MAX + 1 of each
    bot.config(unknown_chats=["41000"])
    for i in range(failures):
        assert gw.send_otp({"chat_id": "41000", "otp": "1234"}).status == 502
    bot.config(server_errors={"count": failures, "status": 502})
    for i in range(failures):
        assert gw.send_otp({"chat_id": str(41001 + i), "otp": "1234"}).status == 502
    bot.config(close_after_read={"count": failures, "methods": ["sendMessage"]})
    for i in range(failures):
        assert gw.send_otp({"chat_id": str(41100 + i), "otp": "1234"}).status == 504
    for i in range(failures):
        r = gw.request("POST", "/revoke-otp", {"chat_id": "41000", "message_id": 1 + i},
                       headers={"Content-Type": "application/json"})
        assert r.status == 404, r
    r = gw.request("POST", "/send-otp", {"chat_id": "41200", "otp": "1234"},
                   headers={"Content-Type": "application/json"}, timeout=10 * SLOW)
    assert r.status == 200, r
    held = {pid: store_connections(gw, pid) for pid in otp_fcgi_pids(gw)}
    assert all(n <= STORE_POOL_MAX + 1 for n in held.values()), held
