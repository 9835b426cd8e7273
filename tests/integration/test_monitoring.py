"""Monitoring: the alert rules (promtool's checks and unit tests), the gauges they watch in
/metrics (otp-deleter's heartbeat, the overdue row, the store), and a real Prometheus that scrapes
a running stack and evaluates every dashboard and alert expression."""
import http.client
import json
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import ROOT, SLOW, free_port, stop_process, wait_until
from test_metrics import samples

RULES = ROOT / "conf/prometheus/otp-gateway.rules.yml"
RULE_TESTS = ROOT / "conf/prometheus/otp-gateway.rules.test.yml"


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool (Debian package prometheus) is needed: .ci/install-deps installs it"
    return path


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    p = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                       text=True, cwd=RULE_TESTS.parent)
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_a_runbook_section():
    rules = RULES.read_text()
    tests = RULE_TESTS.read_text()
    runbook = (ROOT / "docs/monitoring.md").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines()
              if line.strip().startswith("- alert:")]
    assert len(alerts) >= 7, alerts
    for name in alerts:
        # a test case that expects it firing names it before an exp_alerts with an alert in it
        fired = [chunk for chunk in tests.split("- alertname: ")[1:]
                 if chunk.startswith(name + "\n") and "exp_labels" in chunk.split("- alertname")[0]]
        quiet = [chunk for chunk in tests.split("- alertname: ")[1:]
                 if chunk.startswith(name + "\n") and "exp_alerts: []" in chunk]
        assert fired, f"{name}: no test expects it to fire"
        assert quiet, f"{name}: no test expects it to stay quiet"
        assert f"docs/monitoring.md#{name.lower()}" in rules, f"{name}: no runbook line"
        assert f"### {name}" in runbook, f"{name}: no section in docs/monitoring.md"


def test_metrics_report_the_deleter_and_the_overdue_row(make_gateway):
    gw = make_gateway(env={"DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    s = samples(gw.get("/metrics").text)
    assert s["otp_deleter_up"] == 1 and s["otp_store_up"] == 1
    assert s["otp_pending_overdue_seconds"] == 0
    assert gw.send_otp({"chat_id": "42", "otp": "1234", "expire_seconds": 5}).status == 200
    gw.stop_deleter()
    # the row falls due 5 s after the send and nobody deletes it; the heartbeat goes stale
    s = wait_until(lambda: (lambda s: s["otp_deleter_up"] == 0 and
                            s["otp_pending_overdue_seconds"] > 1 and s)(
                                samples(gw.get("/metrics").text)), 15 * SLOW,
                   "a stale heartbeat and an overdue row in /metrics")
    assert s["otp_pending_deletions"] == 1
    assert s["otp_pending_overdue_seconds"] < 10 * SLOW


def test_metrics_answer_store_up_0_alone_when_the_store_is_out_of_reach(make_gateway):
    closed = free_port()  # nothing listens there
    gw = make_gateway(env={"OTP_STORE": f"redis://127.0.0.1:{closed}/0"}, deleter=False)
    r = gw.get("/metrics")
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert samples(r.text) == {"otp_store_up": 0}, r.text
    assert "# TYPE otp_store_up gauge" in r.text
    p = subprocess.run([promtool(), "check", "metrics"], input=r.text, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- a real Prometheus scraping a running stack ----

DASHBOARD = ROOT / "conf/grafana/otp-gateway.json"
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!=|\s*bool\b)")


def with_bool(expr):
    """An alert's expression with `bool` on every comparison outside label matchers: it then
    answers 0 or 1 for every series it watches instead of only those that breach, so a series
    comes back whether or not the alert would fire (and none for a mistyped metric name)."""
    out, depth, i = [], 0, 0
    while i < len(expr):
        c = expr[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == '"' and depth:
            j = expr.index('"', i + 1)
            out.append(expr[i:j + 1])
            i = j + 1
            continue
        m = COMPARISON.match(expr, i) if depth == 0 else None
        if m:
            out.append(m.group(1) + " bool")
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def test_with_bool_leaves_label_matchers_alone():
    assert with_bool('a{r!~"x|y"} / b > 0.05') == 'a{r!~"x|y"} / b > bool 0.05'
    assert with_bool("min(x) == 0 or max(y) >= bool 3") == "min(x) == bool 0 or max(y) >= bool 3"


def dashboard_exprs():
    """Every target's expression, with Grafana's variables as a dashboard would fill them."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"].replace("$__rate_interval", "10s")
                            .replace("$job", "otp-gateway").replace("$instance", ".*")))
    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def alert_exprs():
    """(name, expression) of every alert, read with a YAML-free scan of the block scalars."""
    out, name, lines = [], None, RULES.read_text().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("- alert:"):
            name = s.split(":", 1)[1].strip()
        elif s == "expr: |":
            indent = len(line) - len(line.lstrip()) + 2
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) < indent:
                    break
                body.append(nxt.strip())
            out.append((name, " ".join(b for b in body if b)))
    return out


class Prometheus:
    def __init__(self, workdir, target):
        self.port = free_port()
        d = Path(workdir) / "prometheus"
        d.mkdir()
        shutil.copy(RULES, d / "rules.yml")
        (d / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{d / 'rules.yml'}]\n"
            "scrape_configs:\n"
            "  - job_name: otp-gateway\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n")
        self.log = open(d / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={d / 'prometheus.yml'}",
             f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.ready(), 30 * SLOW, "Prometheus to be ready")

    def ready(self):
        assert self.proc.poll() is None, "prometheus exited"
        try:
            return self.api("/-/ready", raw=True)
        except OSError:
            return False

    def api(self, path, raw=False, **params):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""))
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if raw:
            return resp.status == 200
        data = json.loads(body)
        assert data["status"] == "success", (path, params, data)
        return data["data"]

    def query(self, expr):
        return self.api("/api/v1/query", query=expr)["result"]

    def stop(self):
        stop_process(self.proc)
        self.log.close()


@pytest.fixture
def prometheus_for(workdir):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus (Debian package prometheus) is needed: .ci/install-deps installs it")
    started = []

    def start(gw):
        started.append(Prometheus(workdir, f"127.0.0.1:{gw.port}"))
        return started[-1]
    yield start
    for p in started:
        p.stop()


def test_a_real_prometheus_finds_every_dashboard_and_alert_series_and_sees_deletion_stop(
        make_gateway, prometheus_for, bot):
    gw = make_gateway(env={"DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    prom = prometheus_for(gw)
    # traffic that makes every series exist: a send deleted at its time (the lag histogram,
    # deleteMessage's latency), a send revoked at once, a request the gateway refuses, a chat
    # Telegram refuses and a 429 from Telegram
    assert gw.send_otp({"chat_id": "42", "otp": "1234", "expire_seconds": 5}).status == 200
    sent = gw.send_otp({"chat_id": "43", "otp": "5678", "expire_seconds": 60}).json
    r = gw.request("POST", "/revoke-otp", body={"chat_id": "43", "message_id": sent["message_id"]},
                   headers={"Content-Type": "application/json"})
    assert r.status in (200, 202), r
    assert gw.send_otp({"chat_id": "42", "otp": "1"}).status == 422
    bot.config(unknown_chats=["45"])
    assert gw.send_otp({"chat_id": "45", "otp": "1234"}).status == 502
    bot.config(flood={"retry_after": 1, "count": 1})
    assert gw.send_otp({"chat_id": "46", "otp": "1234"}).status in (200, 429, 503)
    wait_until(lambda: not gw.db_rows(), 20 * SLOW, "both messages deleted")
    exprs = dashboard_exprs() + [(name, with_bool(e)) for name, e in alert_exprs()]
    assert len(exprs) >= 25, exprs
    missing = exprs
    deadline = time.monotonic() + 30 * SLOW
    while missing and time.monotonic() < deadline:
        missing = [(what, e) for what, e in missing if not prom.query(e)]
        time.sleep(0.5)
    assert not missing, f"expressions without a series: {missing}"
    # what the scrape saw is what the gateway counts
    sent_total = float(prom.query('sum(otp_sent_total{job="otp-gateway"})')[0]["value"][1])
    assert sent_total == samples(gw.get("/metrics").text)["otp_sent_total"] >= 2
    alerts = [a["labels"]["alertname"] for a in prom.api("/api/v1/alerts")["alerts"]]
    assert "OtpDeletionStopped" not in alerts, alerts
    # the induced fault: otp-deleter stopped, a code sent just before left behind
    assert gw.send_otp({"chat_id": "44", "otp": "4321", "expire_seconds": 5}).status == 200
    gw.stop_deleter()

    def pending():
        return [a for a in prom.api("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "OtpDeletionStopped" and a["state"] == "pending"]
    alert = wait_until(pending, 20 * SLOW, "OtpDeletionStopped pending", interval=0.5)[0]
    assert alert["labels"]["job"] == "otp-gateway" and alert["labels"]["severity"] == "critical"
    assert float(prom.query('max(otp_pending_deletions{job="otp-gateway"})')[0]["value"][1]) == 1
