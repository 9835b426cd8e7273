#!/usr/bin/python3
"""make bench — figures, not tests: what the gateway does at real Bot API latency.

1. Deletion lag: a sustained 30 sends/s for 60 s (BENCH_SECONDS) with the emulator answering in
   300 ms; the lag of each confirmed deletion after its delete_at (from otp-deleter's log), and
   the deleter's peak RSS.
2. Throughput: wrk at c=16 and c=64 against POST /send-otp with the emulator answering in 100 ms
   and in 300 ms, default configuration (2 processes x 16 threads, 30 sends/s budget): OTPs/s,
   p50/p99, answers other than 200, and the memory of the whole stack; each run twice, side by
   side: with the SQLite store and with a Redis store (a local redis-server on a unix socket).

The original FastAPI service cannot be started here (PyPI is unreachable), so it is not run side
by side; its README claims ~100 OTPs/s and <200 ms locally.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from conftest import FakeBot, Gateway, RedisServer  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "60"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))


def rss_kib(pid, field="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """Every descendant of pid (the front end runs under conf/serve.sh)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/stat").read().split(")")[1].split()[1] == str(pid):
                    out.append(int(p))
                    out += children(int(p))
            except OSError:
                pass
    return out


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def start(workdir, latency_ms, env=None, redis=None):
    bot = FakeBot(workdir)
    bot.config(method_latency_ms={"sendMessage": latency_ms, "deleteMessage": latency_ms,
                                  "deleteMessages": latency_ms})
    sub = Path(workdir) / "gw"
    sub.mkdir()
    base = {"RATE_LIMIT_PER_USER": "1000000", "RATE_LIMIT_PER_IP": "0", "LOG_LEVEL": "INFO",
            "TELEGRAM_TIMEOUT_SECONDS": "5"}
    base.update(env or {})
    if redis is not None:
        base["OTP_STORE"] = redis.url(f"bench-{os.path.basename(workdir)}:")
    gw = Gateway(sub, bot, base)
    gw.start()
    return bot, gw


def deletion_lag():
    workdir = tempfile.mkdtemp(dir="/dev/shm", prefix="otp-bench-")
    bot, gw = start(workdir, 300)
    try:
        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(gw.deleter.pid, "VmHWM"))
                time.sleep(0.5)
        threading.Thread(target=watch, daemon=True).start()

        sent, failed, took, lock = [0], [0], [], threading.Lock()

        def one(i):
            t = time.monotonic()
            r = gw.send_otp({"chat_id": str(1_000_000 + i), "otp": "123456", "expire_seconds": 5})
            with lock:
                took.append(time.monotonic() - t)
                if r.status == 200:
                    sent[0] += 1
                else:
                    failed[0] += 1

        t0 = time.monotonic()
        threads = []
        for i in range(30 * SECONDS):  # open loop: one send every 1/30 s
            delay = t0 + i / 30 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            th = threading.Thread(target=one, args=(i,))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        deadline = time.monotonic() + 30
        while gw.db_rows("SELECT count(*) FROM pending_deletions")[0][0] and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        lags = [l["lag_seconds"] for l in gw.log_lines() if l.get("message") == "message deleted"]
        print(f"sustained 30 sends/s for {SECONDS} s, Bot API latency 300 ms:")
        print(f"  sent {sent[0]}, refused {failed[0]}, deleted {len(lags)}")
        print(f"  POST /send-otp p50 {percentile(took, .5) * 1000:.0f} ms  "
              f"p99 {percentile(took, .99) * 1000:.0f} ms  max {max(took) * 1000:.0f} ms")
        print(f"  lag p50 {percentile(lags, .5):.3f} s  p99 {percentile(lags, .99):.3f} s  "
              f"max {max(lags, default=float('nan')):.3f} s")
        print(f"  otp-deleter peak RSS {peak[0] / 1024:.1f} MiB")
    finally:
        gw.stop()
        bot.stop()
        shutil.rmtree(workdir, ignore_errors=True)


WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"chat_id": "' .. (2000000 + counter) .. '", "otp": "123456", "expire_seconds": 60}'
  return wrk.format("POST", "/send-otp", {["Content-Type"] = "application/json"}, body)
end
"""


def stack_rss_mib(gw):
    pids = [gw.lighttpd.pid, gw.deleter.pid] + children(gw.lighttpd.pid)
    return sum(rss_kib(p) for p in pids) / 1024, len(pids)


def wrk_run(latency_ms, conns, redis=None):
    workdir = tempfile.mkdtemp(dir="/dev/shm", prefix="otp-bench-")
    bot, gw = start(workdir, latency_ms, redis=redis)
    try:
        script = Path(workdir) / "post.lua"
        script.write_text(WRK_LUA)
        p = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{WRK_SECONDS}s", "--latency",
                            "-s", str(script), f"http://127.0.0.1:{gw.port}/"],
                           capture_output=True, text=True, timeout=WRK_SECONDS + 60)
        out = p.stdout
        sends = [r for r in bot.requests("sendMessage") if r["status"] == 200]
        p50 = re.search(r"50%\s+(\S+)", out)
        p99 = re.search(r"99%\s+(\S+)", out)
        total = re.search(r"(\d+) requests in", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        mem, nproc = stack_rss_mib(gw)
        print(f"  {'redis ' if redis else 'sqlite'}  latency {latency_ms:3d} ms  c={conns:<3d} OTPs/s {len(sends) / WRK_SECONDS:6.1f}  "
              f"answers {total.group(1) if total else '?':>6} (non-200: {non2xx.group(1) if non2xx else 0})  "
              f"p50 {p50.group(1) if p50 else '?'}  p99 {p99.group(1) if p99 else '?'}  "
              f"stack RSS {mem:.1f} MiB in {nproc} processes")
    finally:
        gw.stop()
        bot.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    if "--lag-only" not in sys.argv:
        if shutil.which("wrk") is None:
            print("wrk is not installed (Debian package wrk): throughput skipped")
        else:
            print(f"throughput, wrk {WRK_SECONDS} s per run, default configuration "
                  "(non-200 answers past the 30 sends/s budget are 503s):")
            rdir = tempfile.mkdtemp(dir="/dev/shm", prefix="otp-bench-redis-")
            redis = RedisServer(rdir) if shutil.which("redis-server") else None
            try:
                for latency in (100, 300):
                    for conns in (16, 64):
                        wrk_run(latency, conns)
                        if redis is not None:
                            wrk_run(latency, conns, redis)
            finally:
                if redis is not None:
                    redis.stop()
                shutil.rmtree(rdir, ignore_errors=True)
    if "--wrk-only" not in sys.argv:
        deletion_lag()


if __name__ == "__main__":
    main()
