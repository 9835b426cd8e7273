"""make bench's harness works: its nginx fake Bot API answers like the Bot API, and a tiny run
(BENCH_SMOKE=1, without the original) completes and counts what it sent and deleted.
Speed is printed by make bench, never asserted here."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import BUILD, PYTHON, ROOT, SLOW, wait_until

sys.path.insert(0, str(ROOT / "tests/bench"))
import nginx_bot  # noqa: E402

pytestmark = pytest.mark.skipif(nginx_bot.missing() is not None,
                                reason=f"{nginx_bot.missing()} (.ci/install-deps installs it)")


def post(url, body, content_type="application/json"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def test_nginx_fake_answers_like_the_bot_api(workdir):
    bot = nginx_bot.NginxBot(workdir, latency_ms=200)
    try:
        t = time.monotonic()
        status, first = post(f"{bot.url}/bot1:x/sendMessage", b'{"chat_id":"42","text":"a"}')
        assert time.monotonic() - t >= 0.2  # the latency is injected
        assert status == 200 and first["ok"] is True
        assert first["result"]["chat"]["id"] == 42
        _, second = post(f"{bot.url}/bot1:x/sendMessage", b"chat_id=-7&text=b",
                         "application/x-www-form-urlencoded")
        assert second["result"]["chat"]["id"] == -7
        ids = [first["result"]["message_id"], second["result"]["message_id"]]
        assert all(isinstance(i, int) and 0 < i < 2**53 for i in ids) and ids[0] < ids[1]
        assert post(f"{bot.url}/bot1:x/deleteMessage", b'{"chat_id":"42","message_id":1}') == \
            (200, {"ok": True, "result": True})
        assert post(f"{bot.url}/bot1:x/deleteMessages",
                    b'{"chat_id":"42","message_ids":[1,2]}') == (200, {"ok": True, "result": True})
        with pytest.raises(urllib.error.HTTPError) as e:
            post(f"{bot.url}/bot1:x/sendPhoto", b"{}")
        assert e.value.code == 404 and json.loads(e.value.read())["error_code"] == 404
        wait_until(lambda: len(bot.calls()) == 5, 5, "the fake's call log")  # flushed every 200 ms
        calls = bot.calls()
        assert [c["method"] for c in calls] == ["sendMessage", "sendMessage", "deleteMessage",
                                                "deleteMessages", "-"]
        assert [c["message_id"] for c in calls[:2]] == ids
        assert calls[1]["body"] == {"chat_id": "-7", "text": "b"}
        assert calls[3]["body"]["message_ids"] == [1, 2]
        assert calls[0]["done"] - calls[0]["at"] >= 0.2
    finally:
        bot.stop()


@pytest.mark.serial  # it measures the stack's throughput and cost
@pytest.mark.sqlite_only  # the bench starts its own stacks: once is enough
def test_make_bench_smoke_run_completes():
    env = dict(os.environ, BENCH_SMOKE="1", ORIGINAL_DIR="", OTP_BUILD_DIR=str(BUILD))
    p = subprocess.run([PYTHON, str(ROOT / "tests/bench/bench.py")], env=env,
                       capture_output=True, text=True, timeout=300 * SLOW)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "original: skipped: ORIGINAL_DIR is empty" in out
    for header in ("1. Zero Bot API latency", "2. Paid broadcast", "3. Default configuration",
                   "4. The Bot API over TLS", "5. Revoke with 2,000 rows pending"):
        assert header in out, out
    # scenario 1's rows (ours, on Redis when redis-server is there, on Sentinel when
    # redis-sentinel is, per-address limit off), one row in each open-loop scenario, then
    # scenario 4's: plain HTTP and TLS at zero latency and in the open loop, and the CPU per
    # send of each open loop
    rows = (5 if shutil.which("redis-server") else 4) + 6 + \
        (1 if shutil.which("redis-sentinel") else 0)
    assert len(re.findall(r"^   otp-gateway\b.*\d", out, re.M)) == rows, out
    # then the per-address limit's cost: one pair of runs (CPU µs per request, req/s) and the median
    assert re.search(r"^\s+1\s+\d+\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+[\d.]+$", out, re.M), out
    assert re.search(r"over 0, median of the pairs: CPU [+-][\d.]+ %", out), out
    # scenario 3 (30 sends/s for 1 s, within the default budget): every request answered 200,
    # seen by the fake and deleted; the harness matched each deletion to its send
    row = re.search(r"^   otp-gateway\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s",
                    out.split("3. Default configuration")[1], re.M)
    assert row and row.groups() == ("30", "30", "30", "30"), out
    # scenario 4: every send over TLS answered, seen by the fake and deleted; CPU per send printed
    tls = out.split("4. The Bot API over TLS")[1]
    assert re.search(r"^   otp-gateway, TLS\s+\d+\s+\S+ms\s+\S+ms\s+\d+µs\s+\d+$", tls, re.M), out
    row = re.search(r"^   otp-gateway, TLS\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s", tls, re.M)
    assert row and len(set(row.groups())) == 1, out
    assert re.search(r"^   otp-gateway, TLS: CPU \d+ µs per send, \d+ connections$", tls, re.M), out
    # scenario 5: the revoke's store step timed on SQLite (and Redis when it is there), every
    # claim taking its row
    revoke = out.split("5. Revoke with")[1]
    stores = ["SQLite"] + (["Redis"] if shutil.which("redis-server") else [])
    for store in stores:
        assert re.search(rf"^   {store} .*\b100 claims   median \d+\.\d+ ms   p99 \d+\.\d+ ms",
                         revoke, re.M), out
