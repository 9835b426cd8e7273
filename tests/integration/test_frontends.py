"""The black-box suite: the HTTP contract checked through every front end we ship, each started
as shipped (conf/serve.sh, the installed tree, the container). Only HTTP and the Bot API
emulator are used, so the same checks hold whatever runs behind the address: the /send-otp
contract with every status (413 included, through the web server's own limits too), rate
limits shared across the pool of processes, the message deleted on time, /health, /metrics and
the docs."""
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (BUILD, FRONTENDS, ROOT, SLOW, WEB_USER, FakeBot, Gateway, Response, free_port,
                      frontend_missing, parse_iso, wait_until)

API_KEY = "bb-key-0123456789abcdef"
SUITE_ENV = {"API_KEY": API_KEY, "RATE_LIMIT_PER_USER": "3", "RATE_LIMIT_WINDOW_SECONDS": "600",
             "DELETER_HEARTBEAT_STALE_SECONDS": "2", "OTP_FCGI_THREADS": "4"}
KEY = {"X-API-Key": API_KEY}
JSON_CT = {"Content-Type": "application/json", **KEY}
# the installed tree, the container and the Kubernetes manifests (podman kube play) are added by
# fixtures of their own (below)
# the container and the pod run under fixed names on the host's network (one image per
# checkout): two workers may not run them at once
KINDS = list(FRONTENDS) + ["installed"] + [pytest.param(k, marks=pytest.mark.serial)
                                           for k in ("container", "kubernetes")]


class Stack:
    """A started front end with its emulator; `gw` answers request()/get() on its port."""

    def __init__(self, kind, request):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="otp-bb-", dir="/dev/shm")
        self.bot = FakeBot(self.dir)
        sub = Path(self.dir) / "gw"
        sub.mkdir()
        if kind in FRONTENDS:
            self.gw = Gateway(sub, self.bot, SUITE_ENV, kind)
        elif kind == "installed":
            tree = request.getfixturevalue("installed_tree")
            self.gw = Gateway(sub, self.bot, SUITE_ENV, "lighttpd", layout=tree)
        else:
            factory = {"container": "container_gateway_factory",
                       "kubernetes": "kube_gateway_factory"}[kind]
            self.gw = request.getfixturevalue(factory)(sub, self.bot, SUITE_ENV)

    def close(self):
        try:
            self.gw.stop()
        finally:
            self.bot.stop()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", params=KINDS)
def stack(request):
    if request.param in FRONTENDS and frontend_missing(request.param):
        pytest.skip(frontend_missing(request.param))
    s = Stack(request.param, request)
    try:
        s.gw.start()
        yield s
    finally:
        s.close()


def post(gw, body, headers=JSON_CT, **kw):
    return gw.request("POST", "/send-otp", body=body, headers=headers, **kw)


def post_chunked(gw, data):
    """A body sent with Transfer-Encoding: chunked (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/send-otp", body=iter([data[i:i + 4096] for i in range(0, len(data), 4096)]),
                 headers=JSON_CT, encode_chunked=True)
    resp = conn.getresponse()
    r = Response(resp.status, resp.headers, resp.read())
    conn.close()
    return r


def detail(r):
    assert r.headers["Content-Type"].startswith("application/json"), (r, r.headers)
    return r.json["detail"]


def test_send_otp_answers_and_the_message_is_deleted_on_time(stack):
    r = post(stack.gw, {"chat_id": "7001", "otp": "483920", "expire_seconds": 5})
    assert r.status == 200, r
    assert r.json["success"] is True and r.json["chat_id"] == "7001"
    assert r.text.startswith('{"success":true,'), "compact JSON"
    delete_at = parse_iso(r.json["delete_at"])
    assert delete_at == parse_iso(r.json["sent_at"]) + 5
    [msg] = stack.bot.messages("7001")
    assert msg["message_id"] == r.json["message_id"] and "483920" in msg["text"]
    # never before delete_at; within 2 s after it (the deleter's promise is ~1 s), wider when slow
    gone = wait_until(lambda: stack.bot.messages("7001")[0]["deleted_at"], 10 * SLOW, "the deletion")
    assert delete_at <= gone <= delete_at + 1 + 2 * SLOW, (delete_at, gone)


def test_authorization_bearer_reaches_the_responder(stack):
    r = post(stack.gw, {"chat_id": "7002", "otp": "1234"},
             headers={"Content-Type": "application/json", "Authorization": "Bearer " + API_KEY})
    assert r.status == 200, r


@pytest.mark.parametrize("case", ["404", "405", "401", "401-wrong", "413", "413-over-web-cap",
                                  "413-chunked", "415", "422", "502"])
def test_errors_are_json_with_the_right_status_and_send_nothing(stack, case):
    gw, bot = stack.gw, stack.bot
    before = len(bot.requests("sendMessage"))
    if case == "404":
        r = gw.get("/nope")
        assert (r.status, detail(r)) == (404, "Not Found")
    elif case == "405":
        r = gw.get("/send-otp")
        assert (r.status, detail(r)) == (405, "Method Not Allowed")
        assert r.headers["Allow"] == "POST"
    elif case.startswith("401"):
        headers = {"Content-Type": "application/json"}
        if case == "401-wrong":
            headers["X-API-Key"] = "wrong"
        r = post(gw, {"chat_id": "7003", "otp": "1234"}, headers=headers)
        assert (r.status, detail(r)) == (401, "Missing or invalid API key: send it in the X-API-Key header or as Authorization: Bearer <key>")
    elif case.startswith("413"):
        big = json.dumps({"chat_id": "7003", "otp": "1234", "pad": "x" * 70000})
        if case == "413":
            r = post(gw, big[:5000])
        elif case == "413-over-web-cap":  # past the web server's own cap (64 KiB)
            r = post(gw, big)
        else:  # Apache's mod_proxy_fcgi passes this without CONTENT_LENGTH
            r = post_chunked(gw, big[:20000].encode())
        assert (r.status, detail(r)) == (413, "Request body larger than 4096 bytes")
    elif case == "415":
        r = post(gw, '{"chat_id": "7003", "otp": "1234"}', headers={"Content-Type": "text/plain", **KEY})
        assert (r.status, detail(r)) == (415, "Content-Type must be application/json")
    elif case == "422":
        r = post(gw, {"chat_id": "7003", "otp": "12ab56"})
        assert r.status == 422, r
        assert r.text == ('{"detail":[{"type":"value_error","loc":["body","otp"],'
                          '"msg":"Value error, otp must contain only digits"}]}')
    elif case == "502":
        bot.config(unknown_chats=["7004"])
        r = post(gw, {"chat_id": "7004", "otp": "1234"})
        bot.config(unknown_chats=[])
        assert r.status == 502, r
        assert r.json == {"success": False, "detail": "Bad Request: chat not found",
                          "telegram_error_code": 400}
        before += 1  # that one was sent, and refused
    assert len(bot.requests("sendMessage")) == before, "an error sent something"


def test_chat_rate_limit_holds_across_the_pool(stack):
    """8 concurrent sends for one chat, at 300 ms Bot API latency so they overlap in several
    processes: exactly RATE_LIMIT_PER_USER (3) get through, the rest are 429 with Retry-After."""
    stack.bot.config(method_latency_ms={"sendMessage": 300})
    try:
        with ThreadPoolExecutor(8) as pool:
            rs = list(pool.map(lambda i: post(stack.gw, {"chat_id": "7010", "otp": "1234"}), range(8)))
    finally:
        stack.bot.config(method_latency_ms={})
    statuses = sorted(r.status for r in rs)
    assert statuses == [200] * 3 + [429] * 5, rs
    for r in rs:
        if r.status == 429:
            assert detail(r).startswith("Rate limit exceeded. Maximum 3 OTPs per")
            assert int(r.headers["Retry-After"]) > 0
    assert len(stack.bot.messages("7010")) == 3
    pids = getattr(stack.gw, "send_pids", lambda: None)()
    if pids is not None:
        assert len(pids) > 1, f"one process answered every send: the pool was not exercised ({pids})"


def test_health_metrics_and_docs(stack):
    gw = stack.gw
    r = gw.get("/health")
    assert r.status == 200 and r.json["status"] == "ok", r
    checks = r.json["checks"]
    assert {"database", "deleter", "telegram_sends"} <= set(checks), checks
    assert set(checks.values()) == {"ok"}, checks
    r = gw.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r
    assert "\notp_sent_total " in r.text and "otp_pending_deletions" in r.text
    sent = float(r.text.split("\notp_sent_total ")[1].split()[0])
    assert sent >= 1, "the totals of the pool's processes"
    for path, needle in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = gw.get(path)
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html"), (path, r)
        assert needle in r.text
    r = gw.get("/openapi.json")
    assert r.status == 200 and r.json["paths"]["/send-otp"], r
    r = gw.request("POST", "/docs", body="{}", headers=JSON_CT)
    assert r.status in (404, 405) and detail(r) in ("Not Found", "Method Not Allowed"), r
    assert gw.get("/vendor/missing.js").status == 404


def test_sends_stop_while_the_deleter_is_down(stack):
    """Fail-closed: no deleter heartbeat, no send (503), whatever front end."""
    gw = stack.gw
    if getattr(gw, "stop_deleter", None) is None:
        pytest.skip(f"{stack.kind}: its deleter cannot stop alone (the container exits: test_container.py)")
    gw.stop_deleter()
    try:
        wait_until(lambda: gw.get("/health").status == 503, 10 * SLOW, "a stale heartbeat",
                   interval=0.2)
        r = post(gw, {"chat_id": "7020", "otp": "1234"})
        assert r.status == 503, r
        assert r.json["success"] is False and "deletion is not running" in r.json["detail"]
        assert int(r.headers["Retry-After"]) > 0
        assert stack.bot.messages("7020") == []
    finally:
        gw.start_deleter()
        wait_until(gw.healthy, 10 * SLOW, "health after the deleter restarted")


@pytest.mark.parametrize("server", [f for f in FRONTENDS if f != "lighttpd"])
def test_make_run_server_starts_that_front_end_in_sandbox_mode(workdir, server):
    """`make run SERVER=...` (conf/run.sh): the front end from its shipped config, otp-deleter
    and, without a token, the emulator; the README's example works; SIGTERM stops everything.
    (lighttpd, the default, is test_config_and_run.py's.)"""
    if frontend_missing(server):
        pytest.skip(frontend_missing(server))
    port = free_port()
    marker = uuid.uuid4().hex
    db_dir = Path(workdir) / "db"
    db_dir.mkdir()
    if server == "apache-fcgid" and os.geteuid() == 0:
        os.chmod(workdir, 0o711)  # run.sh runs the deleter, and Apache otp-fcgi, as www-data
        os.chown(db_dir, pwd.getpwnam(WEB_USER).pw_uid, pwd.getpwnam(WEB_USER).pw_gid)
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "SERVER": server, "TELEGRAM_BOT_TOKEN": "",
           "OTP_DB_PATH": str(db_dir / "sandbox.db"), "SANDBOX_LATENCY_MS": "50",
           "OTP_TEST_MARKER": marker}
    log_path = Path(workdir) / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(ROOT / "conf/run.sh"), str(BUILD)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: f"({server}) listening on" in log_path.read_text() or proc.poll() is not None,
                   15 * SLOW, "make run")
        assert proc.poll() is None, log_path.read_text()
        api_base = re.search(r"answers at (http://127\.0\.0\.1:\d+)", log_path.read_text()).group(1)
        bot = FakeBot.__new__(FakeBot)
        bot.port = int(api_base.rsplit(":", 1)[1])
        gw = Gateway.__new__(Gateway)
        gw.port = port
        wait_until(gw.healthy, 15 * SLOW, f"health through {server}")
        assert gw.get("/health").json["mode"] == "sandbox"
        r = gw.send_otp({"chat_id": "123456789", "otp": "483920", "expire_seconds": 5})
        assert r.status == 200, (r, log_path.read_text()[-3000:])
        gone = wait_until(lambda: bot.messages("123456789")[0]["deleted_at"], 10 * SLOW, "the deletion")
        assert gone >= parse_iso(r.json["delete_at"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    def left():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if f"OTP_TEST_MARKER={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found
    wait_until(lambda: not left(), 10, "every process make run started to exit")
