"""Monitoring: the alert rules (promtool's checks and unit tests) and the gauges they watch in
/metrics (otp-deleter's heartbeat, the overdue row, the store)."""
import shutil
import subprocess

import pytest

from conftest import ROOT, SLOW, free_port, wait_until
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
