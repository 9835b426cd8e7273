"""GET /metrics: Prometheus text with the totals of every process, valid for promtool."""
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, wait_until

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def samples(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_pass_promtool_and_keep_the_originals_names(make_gateway, bot):
    gw = make_gateway()
    assert gw.send_otp({"chat_id": "42", "otp": "1234"}).status == 200
    assert gw.send_otp({"chat_id": "42", "otp": "12"}).status == 422
    bot.config(unknown_chats=["43"])
    assert gw.send_otp({"chat_id": "43", "otp": "1234"}).status == 502
    # another process may answer /metrics (nginx and Apache spread sequential requests): the
    # senders' counts reach it within their 250 ms flush
    r = wait_until(lambda: (lambda r: r.status == 200 and
                            samples(r.text).get('http_requests_total{path="/send-otp",status="502"}') == 1
                            and r)(gw.get("/metrics")), 5, "every process's counts in /metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed: .ci/install-deps installs it"
    p = subprocess.run([promtool, "check", "metrics"], input=r.text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    s = samples(r.text)
    for name in ("otp_sent_total", "rate_limit_exceeded_total", "otp_deleted_total",
                 "otp_delete_failed_total", "otp_pending_deletions"):
        assert name in s, name
    assert s["otp_sent_total"] == 1
    assert s['otp_failed_total{reason="validation_error"}'] == 1
    assert s['otp_failed_total{reason="telegram_refused"}'] == 1
    assert s["otp_pending_deletions"] == 1
    assert s['http_requests_total{path="/send-otp",status="200"}'] == 1
    assert s['telegram_api_duration_seconds_count{method="sendMessage"}'] == 2
    assert "# TYPE otp_delete_lag_seconds histogram" in r.text
    assert "# TYPE otp_send_duration_seconds histogram" in r.text


def test_metrics_sum_every_process_and_never_go_backwards(make_gateway, bot):
    gw = make_gateway(env={"OTP_FCGI_THREADS": "2"})
    bot.config(latency_ms=50)
    scrapes = []
    stop = threading.Event()

    def scrape():
        while not stop.is_set():
            scrapes.append(samples(gw.get("/metrics").text))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: gw.send_otp({"chat_id": str(9000 + i), "otp": "1234"}).status,
                                 range(30)))
    assert statuses == [200] * 30
    key = 'http_requests_total{path="/send-otp",status="200"}'
    wait_until(lambda: samples(gw.get("/metrics").text).get(key) == 30, 5 * SLOW, "every process's counts")
    stop.set()
    scraper.join()
    final = samples(gw.get("/metrics").text)
    assert final["otp_sent_total"] == 30
    assert len(scrapes) >= 3
    for before, after in zip(scrapes, scrapes[1:]):
        for series, value in before.items():
            if series.startswith("otp_pending_deletions"):
                continue  # a gauge
            assert after.get(series, 0) >= value, f"{series} went back from {value}"
    pids = {l["pid"] for l in gw.log_lines() if l.get("path") == "/send-otp"}
    assert len(pids) >= 2, "the traffic did not reach several processes"


def test_deletions_are_counted_with_their_lag(gateway, bot):
    r = gateway.send_otp({"chat_id": "77", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200

    def deleted():
        s = samples(gateway.get("/metrics").text)
        return s if s.get("otp_deleted_total") == 1 else None
    s = wait_until(deleted, 10 * SLOW, "the deletion to be counted")
    assert s["otp_delete_lag_seconds_count"] == 1
    assert s['otp_delete_lag_seconds_bucket{le="1"}'] == 1, "deleted within a second of delete_at"
    assert s["otp_pending_deletions"] == 0
