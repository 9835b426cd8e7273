#!/usr/bin/python3
"""make soak — a long run, not part of make test: SOAK_REQUESTS (100,000) sends through the whole
stack (lighttpd, 2 otp-fcgi, otp-deleter, the emulator), 5 s expiry, 1,000 chats, send budget and
rate limits opened up so that the run takes minutes, not hours.

Checks, and exits 1 when one fails:
- every process's RSS and open descriptors are flat from the 20,000th request to the 99,000th
  (the last sample while every client still sends): sampled every 5,000 requests, the median
  of the second half is within 5 % of the median of the first half (descriptors: not above it
  by more than 5 % plus one).
  Medians, because connections in flight (lighttpd's, otp-deleter's pool of kept-alive
  connections) and batch buffers come and go between samples, while a leak grows steadily.
  The first 20,000 are a warm-up: otp-deleter only starts deleting 5 s (~7,500 requests) in.
  otp-deleter's descriptors are its pool's: up to DELETER_CONCURRENCY (16) connections, open
  or not at a given sample, so they are checked against that bound instead;
- the database's files stay bounded (SOAK_DB_MAX_MIB, 32);
- every message sent is deleted at the end, and every request got 200.
Prints the figures (for the README)."""
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from conftest import FakeBot, Gateway, wait_until  # noqa: E402

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "100000"))
WARM = min(20000, REQUESTS // 5)
# the last sample is taken while every client still sends (their connections are counted)
LAST = REQUESTS - 1000 if REQUESTS > WARM + 2000 else REQUESTS
CLIENTS = 8
DELETER_POOL = 16  # DELETER_CONCURRENCY's default
DB_MAX = float(os.environ.get("SOAK_DB_MAX_MIB", "32")) * 1024 * 1024


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def processes(gw):
    procs = {"lighttpd": gw.lighttpd.pid, "otp-deleter": gw.deleter.pid}
    for pid in gw.children_left():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "otp-fcgi":
                procs[f"otp-fcgi {pid}"] = pid
        except OSError:
            pass
    return procs


def sample(gw):
    return {name: (rss_kib(pid), fds(pid)) for name, pid in processes(gw).items()}


def db_bytes(gw):
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(gw.db_path + suffix)
        except FileNotFoundError:
            pass
    return total


def main():
    workdir = tempfile.mkdtemp(dir="/dev/shm", prefix="otp-soak-")
    bot = FakeBot(workdir)
    sub = Path(workdir) / "gw"
    sub.mkdir()
    gw = Gateway(sub, bot, {"RATE_LIMIT_PER_USER": "1000000", "RATE_LIMIT_PER_IP": "0",
                            "TELEGRAM_MAX_SENDS_PER_SECOND": "10000", "LOG_LEVEL": "WARNING"})
    failures = []
    try:
        gw.start()
        counter = {"next": 0, "done": 0, "bad": 0}
        lock = threading.Lock()
        samples = {}
        db_max = [0]

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
            while True:
                with lock:
                    i = counter["next"]
                    if i >= REQUESTS:
                        break
                    counter["next"] += 1
                body = json.dumps({"chat_id": str(1_000_000 + i % 1000), "otp": "123456",
                                   "expire_seconds": 5})
                try:
                    conn.request("POST", "/send-otp", body=body,
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
                    ok = False
                with lock:
                    counter["done"] += 1
                    counter["bad"] += not ok
                    done = counter["done"]
                if done in (WARM, LAST) or done % 5000 == 0:
                    samples[done] = sample(gw)
                    db_max[0] = max(db_max[0], db_bytes(gw))
            conn.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            db_max[0] = max(db_max[0], db_bytes(gw))
            time.sleep(0.5)
        took = time.monotonic() - t0
        print(f"{REQUESTS} requests in {took:.0f} s ({REQUESTS / took:.0f}/s), "
              f"{counter['bad']} not 200")
        if counter["bad"]:
            failures.append(f"{counter['bad']} requests were not answered 200")

        wait_until(lambda: all(m["deleted_at"] for m in bot.messages()), 120,
                   "every message to be deleted", interval=1)
        sent = len(bot.messages())
        print(f"messages sent {sent}, all deleted")
        if sent != REQUESTS - counter["bad"]:
            failures.append(f"{sent} messages at Telegram for {REQUESTS - counter['bad']} 200s")

        for name in sorted(samples[LAST]):
            print(f"{name:22s} RSS MiB / fds by request:", "  ".join(
                f"{n // 1000}k {samples[n][name][0] / 1024:.1f}/{samples[n][name][1]}"
                for n in sorted(samples) if name in samples[n]))
        mid = (WARM + LAST) // 2
        for name in sorted(samples[LAST]):
            halves = [[s[name] for n, s in sorted(samples.items())
                       if lo <= n <= hi and name in s] for lo, hi in ((WARM, mid), (mid + 1, LAST))]
            if not halves[0] or not halves[1]:
                failures.append(f"{name} was not there for the whole run")
                continue
            (r0, f0), (r1, f1) = [(statistics.median(v[0] for v in h),
                                   statistics.median(v[1] for v in h)) for h in halves]
            print(f"{name:22s} median RSS {r0 / 1024:6.1f} -> {r1 / 1024:6.1f} MiB   "
                  f"median fds {f0:g} -> {f1:g}")
            if abs(r1 - r0) > 0.05 * r0:
                failures.append(f"{name}: RSS {r0} -> {r1} KiB (more than 5 %)")
            if name == "otp-deleter":
                base = samples[min(samples)][name][1]  # before its first deletion
                most = max(s[name][1] for s in samples.values() if name in s)
                if most > base + DELETER_POOL:
                    failures.append(f"{name}: {most} descriptors, above {base} + its pool")
            elif f1 > 1.05 * f0 + 1:  # fewer connections in flight is no leak
                failures.append(f"{name}: descriptors {f0} -> {f1}")
        print(f"database files at most {db_max[0] / 1024:.0f} KiB")
        if db_max[0] > DB_MAX:
            failures.append(f"database files reached {db_max[0]} bytes")
    finally:
        gw.stop()
        bot.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for f in failures:
        print("FAILED:", f)
    print("soak: ok" if not failures else "soak: FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
