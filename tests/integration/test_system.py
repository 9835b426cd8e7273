"""The Debian package as a user installs it: Debian 12 booted with systemd as PID 1 in podman
(from the local mmdebstrap base of container.py), the .deb installed with apt, then
docs/deploy.md's marked blocks (```sh id=deb-...) run as written, the Bot API pointed at the
emulator (a service inside the container; only the token's value differs from the docs). Then
/run as the web server sees it, a send through nginx deleted on time, the deleter's stop not
undone by the pool, a reboot (`podman restart`) with rows pending (each deleted before the
shutdown completes, the service back by itself), a stop of the pool with a send under way, a
restart of otp-deleter under traffic, the black-box suite of test_frontends.py through nginx
and then through Apache + mod_proxy_fcgi (the docs' Apache block), and last `apt remove` and
`apt purge`. The tests share one machine and run in this order; each one alone (-k) installs
what it needs first. The host reaches the machine's :80 and the emulator's :8081 through ports
podman publishes on loopback.

Run by `make test-system` (root, podman), which builds the .deb first and names its directory
(OTP_DEB_DIR); without it (make test) the module skips: it takes minutes and the whole CPU."""
import contextlib
import json
import os
import random
import re
import shlex
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, SLOW, TOKEN, FakeBot, Gateway, parse_iso, wait_until
import container
import test_frontends as black_box
import test_revoke_otp as revoke_suite
from test_stop_drain import DEADLINE, deleted_at

DEB_DIR = ROOT / os.environ.get("OTP_DEB_DIR", "build/deb")
IMAGE = "localhost/otp-test-system:12"
DOC_TOKEN = "123456789:replace-with-your-token"
# podman stop/restart wait 10 s before SIGKILL by default: the deleter's drain needs its 70 s
STOP_TIMEOUT = "120"
ENV_FILE = "/etc/otp-gateway/otp-gateway.env"
DB = "/run/otp-gateway/db/pending.db"
# the test's settings beside the docs': the Bot API is the emulator in the machine, and the
# per-address limit as in every harness gateway (the host's sends all come from one address)
MACHINE_SETTINGS = {"TELEGRAM_API_BASE": "http://127.0.0.1:8081", "RATE_LIMIT_PER_IP": "1000"}
# the black-box suite's settings (test_frontends.py), in force while it runs; codes it sends
# without expire_seconds are gone within seconds, before the next front end's turn
SUITE_SETTINGS = {**black_box.SUITE_ENV, "DEFAULT_EXPIRE_SECONDS": "5"}
POOL = "otp-fcgi@0.service otp-fcgi@1.service"


def doc_blocks():
    text = (ROOT / "docs/deploy.md").read_text()
    return dict(re.findall(r"^```sh id=(\S+)\n(.*?)^```", text, re.M | re.S))


def deb_file():
    debs = sorted(DEB_DIR.glob("otp-gateway_*_*.deb"))
    return debs[-1] if debs else None


def build_image(deb):
    container.ensure_base_image()
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                             text=True, check=True).stdout
    names = [re.sub(r"\s*\(.*\)", "", d).split("|")[0].strip() for d in depends.split(",")]
    ctx = ROOT / "build/system-image"
    ctx.mkdir(parents=True, exist_ok=True)
    for f in ("Containerfile", "fakebot.service"):
        (ctx / f).write_bytes((ROOT / "tests/system" / f).read_bytes())
    (ctx / "fakebot.py").write_bytes((ROOT / "tests/fakebot/fakebot.py").read_bytes())
    container.podman("build", "--isolation", "chroot", "--format", "docker", "--network", "host",
                     "--build-arg", f"BASE_IMAGE={container.BASE_IMAGE}",
                     "--build-arg", f"DEB_DEPENDS={' '.join(names)}",
                     "-f", str(ctx / "Containerfile"), "-t", IMAGE, str(ctx), timeout=1800)


class Machine:
    def __init__(self):
        self.name = f"otp-system-{uuid.uuid4().hex[:10]}"
        self.installed = False

    def sh(self, script, check=True, timeout=180):
        p = container.podman("exec", self.name, "sh", "-ec", script, check=False, timeout=timeout)
        if check:
            assert p.returncode == 0, f"{script}\n--- {p.stdout[-2000:]}\n--- {p.stderr[-3000:]}"
        return p

    def booted(self, timeout=90):
        def state():
            p = container.podman("exec", self.name, "systemctl", "is-system-running", check=False)
            return p.stdout.strip()
        try:
            wait_until(lambda: state() in ("running", "degraded"), timeout * SLOW, "systemd to boot",
                       interval=0.5)
        except AssertionError:
            return False
        return True

    def host_port(self, port):
        """The loopback port of the host that podman forwards to the machine's port."""
        out = container.podman("port", self.name, f"{port}/tcp").stdout.split()
        return int(out[0].rsplit(":", 1)[1])

    def send(self, chat, expire):
        body = json.dumps({"chat_id": chat, "otp": "4321", "expire_seconds": expire})
        p = self.sh("curl -sS -o - -w '\\n%{http_code}' -X POST http://127.0.0.1/send-otp "
                    f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")
        text, status = p.stdout.rsplit("\n", 1)
        return int(status), json.loads(text)

    def messages(self, chat):
        p = self.sh(f"curl -sS 'http://127.0.0.1:8081/_control/messages?chat_id={chat}'")
        return json.loads(p.stdout)["messages"]

    def journal(self, unit, since=None):
        """The unit's lines; since (a Unix time) keeps the later ones. A container shares the
        host's kernel and so its boot id: after `podman restart` the journal has no boot -1."""
        when = f"--since @{int(since)}" if since else ""
        return self.sh(f"journalctl -q --merge {when} -u {shlex.quote(unit)} -o cat --no-pager").stdout

    def json_lines(self, unit, since=None):
        return [json.loads(l) for l in self.journal(unit, since).splitlines() if l.startswith("{")]

    def pending(self):
        p = self.sh(f"runuser -u otp-gateway -- sqlite3 -cmd '.timeout 5000' {DB} "
                    "'SELECT count(*) FROM pending_deletions'")
        return int(p.stdout)


class MachineGateway(Gateway):
    """The machine's web server on :80 as the host reaches it: the harness's request(), get()
    and send_otp() as for any front end; the pool's pids from the journal."""

    stop_deleter = None  # its stop drains pending rows for up to a minute: the tests here do it

    def __init__(self, machine):  # no Gateway.__init__: nothing is started here
        self.m, self.port = machine, machine.host_port(80)
        self.since = time.time()

    def send_pids(self):
        return {l["pid"] for l in self.m.json_lines("otp-fcgi@*.service", self.since - 1)
                if l.get("message") == "request" and l.get("path") == "/send-otp"}


class MachineBot(FakeBot):
    """The machine's emulator (fakebot.service), controlled from the host like the harness's."""

    def __init__(self, machine):  # no FakeBot.__init__: systemd runs it
        self.port = machine.host_port(8081)
        self.url = None

    def stop(self):
        pass


@pytest.fixture(scope="module")
def machine():
    if "OTP_DEB_DIR" not in os.environ:
        pytest.skip("the package's system test: make test-system (minutes of the whole CPU)")
    why = container.unavailable()
    if why:
        pytest.skip(why)
    deb = deb_file()
    if deb is None:
        pytest.skip(f"no .deb in {DEB_DIR} (make deb; make test-system builds it first)")
    build_image(deb)
    m = Machine()
    container.podman("run", "-d", "--name", m.name, "--systemd=always", "--runtime", "runc",
                     "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                     "--stop-timeout", STOP_TIMEOUT,
                     # a port of the host's loopback for the web server and one for the emulator
                     "-p", "127.0.0.1::80", "-p", "127.0.0.1::8081",
                     # --systemd=always mounts a tmpfs on /var/log/journal (as on /run, /tmp):
                     # a volume of its own keeps the journal of the run before a restart
                     "-v", f"{m.name}-journal:/var/log/journal", IMAGE, "/lib/systemd/systemd")
    try:
        if not m.booted():
            pytest.skip("podman cannot boot systemd as PID 1 here: "
                        + container.podman("logs", m.name, check=False).stdout[-500:])
        container.podman("cp", str(deb), f"{m.name}:/root/{deb.name}")
        yield m
    finally:
        container.podman("rm", "-f", "-t", "0", m.name, check=False)
        container.podman("volume", "rm", "-f", f"{m.name}-journal", check=False)


def run_block(m, block_id, blocks):
    script = blocks[block_id].replace(DOC_TOKEN, TOKEN)
    m.sh(f"cd /root\n{script}", timeout=300)


@pytest.fixture(scope="module")
def installed(machine):
    """The package installed and started with the docs' steps, nginx in front."""
    m, blocks = machine, doc_blocks()
    assert {"deb-install", "deb-token", "deb-start", "deb-nginx", "deb-apache"} <= set(blocks), \
        sorted(blocks)
    run_block(m, "deb-install", blocks)
    # installed, nothing started yet (the token file is the admin's); no token line shipped
    env = m.sh(f"cat {ENV_FILE}").stdout
    assert not re.search(r"^\s*TELEGRAM_BOT_TOKEN", env, re.M)
    assert m.sh(f"stat -c '%U:%G %a' /etc/otp-gateway {ENV_FILE}").stdout.split() == \
        ["root:otp-gateway", "750", "root:otp-gateway", "640"]
    assert m.sh("systemctl is-active otp-deleter.service", check=False).stdout.strip() == "inactive"
    run_block(m, "deb-token", blocks)
    # the test-only step: MACHINE_SETTINGS (the emulator is the Bot API, the address limit)
    m.sh(f"printf '%s\\n' {' '.join(f'{k}={v}' for k, v in MACHINE_SETTINGS.items())} >> {ENV_FILE}")
    run_block(m, "deb-start", blocks)
    run_block(m, "deb-nginx", blocks)
    assert "duplicate MIME type" not in m.sh("nginx -t 2>&1").stdout
    return m


@contextlib.contextmanager
def settings(m, values):
    """values in the settings file (between marker lines) while the block runs; the pool
    restarted with them, and again without them after. otp-deleter reads none of them."""
    lines = ["# test settings begin", *(f"{k}={v}" for k, v in values.items()), "# test settings end"]
    m.sh(f"printf '%s\\n' {' '.join(shlex.quote(l) for l in lines)} >> {ENV_FILE} && "
         f"systemctl restart {POOL}")
    try:
        yield
    finally:
        m.sh(f"sed -i '/^# test settings begin$/,/^# test settings end$/d' {ENV_FILE} && "
             f"systemctl restart {POOL}")


class Stack:
    """What the black-box suite's tests take: the front end's kind, its gateway and emulator."""

    def __init__(self, kind, m):
        self.kind, self.gw, self.bot = kind, MachineGateway(m), MachineBot(m)


def run_black_box_suite(m, kind):
    """test_frontends.py's checks through the machine's web server, each case as pytest would
    run it (its parametrize cases in turn), from a fresh state as with a stack of its own: once
    no row is pending (so the deleter's stop is quick and no message is left), a new database
    (no rate count left from earlier sends) and the emulator emptied."""
    wait_until(lambda: m.pending() == 0, 30 * SLOW, "the earlier codes to be deleted", interval=0.5)
    m.sh(f"systemctl stop {POOL} otp-deleter.service && rm -f /run/otp-gateway/db/* && "
         "systemctl start otp-deleter.service")
    with settings(m, SUITE_SETTINGS):
        stack = Stack(kind, m)
        stack.bot.config(reset=True)
        wait_until(stack.gw.healthy, 15 * SLOW, f"health through {kind}")
        for test in (black_box.test_send_otp_answers_and_the_message_is_deleted_on_time,
                     black_box.test_authorization_bearer_reaches_the_responder,
                     black_box.test_errors_are_json_with_the_right_status_and_send_nothing,
                     black_box.test_chat_rate_limit_holds_across_the_pool,
                     black_box.test_health_metrics_and_docs,
                     revoke_checks):
            cases = [{}]
            for mark in getattr(test, "pytestmark", []):
                if mark.name == "parametrize":
                    name, values = mark.args
                    cases = [{name: v} for v in values]
            for case in cases:
                try:
                    test(stack, **case)
                except AssertionError as e:
                    raise AssertionError(f"{test.__name__}{case or ''} through {kind}: {e}") from e
        return stack


def revoke_checks(stack):
    """POST /revoke-otp through the front end: the key is asked for, a pending code is deleted
    at once, a second revoke of it is 404 without a Bot API call."""
    gw, bot = stack.gw, stack.bot
    r = black_box.post(gw, {"chat_id": "7030", "otp": "1234", "expire_seconds": 60})
    assert r.status == 200, r
    pair = {"chat_id": "7030", "message_id": r.json["message_id"]}
    r = revoke_suite.revoke(gw, pair)
    assert r.status == 401 and "API key" in black_box.detail(r), r
    asked = time.time()
    r = revoke_suite.revoke(gw, pair, headers=black_box.KEY)
    assert r.status == 200 and r.json["success"] is True, r
    gone = deleted_at(bot, "7030", pair["message_id"])
    assert gone is not None and gone - asked <= 1 + SLOW, "deleted at once"
    r = revoke_suite.revoke(gw, pair, headers=black_box.KEY)
    assert r.status == 404 and "No pending message" in black_box.detail(r), r
    assert len(revoke_suite.calls_for(bot, "7030", pair["message_id"])) == 1


def test_package_installed_with_the_docs_steps_serves_and_survives_a_reboot(installed):
    m = installed

    def sent_and_deleted(chat, expire=5):
        status, body = m.send(chat, expire)
        assert status == 200 and body["success"], body
        wait_until(lambda: m.messages(chat) and m.messages(chat)[0]["deleted_at"],
                   (expire + 10) * SLOW, f"the message to {chat} deleted")
        return body

    def web_server_sees_sockets_only():
        www = "runuser -u www-data --"
        m.sh(f"{www} test -r /run/otp-gateway/fcgi/otp-fcgi-0.sock -a -w /run/otp-gateway/fcgi/otp-fcgi-0.sock")
        for path in ("/run/otp-gateway/db", ENV_FILE, "/etc/otp-gateway/telegram-bot-token"):
            assert m.sh(f"{www} cat {path} || {www} ls {path}", check=False).returncode != 0, path
        out = m.sh("stat -c '%n %U:%G %a' /run/otp-gateway/fcgi/otp-fcgi-0.sock "
                   "/run/otp-gateway/fcgi/otp-fcgi-1.sock /run/otp-gateway/db").stdout
        assert out.split("\n")[:3] == [
            "/run/otp-gateway/fcgi/otp-fcgi-0.sock otp-gateway:www-data 660",
            "/run/otp-gateway/fcgi/otp-fcgi-1.sock otp-gateway:www-data 660",
            "/run/otp-gateway/db otp-gateway:otp-gateway 700"], out

    sent_and_deleted("7001")
    web_server_sees_sockets_only()

    # restarts keep the layout; a stopped deleter stays stopped (sends answer 503)
    m.sh(f"systemctl restart otp-deleter.service {POOL}")
    web_server_sees_sockets_only()
    m.sh("systemctl stop otp-deleter.service")
    # sends close once its heartbeat is stale (DELETER_HEARTBEAT_STALE_SECONDS, 10 s); the
    # requests meanwhile start no deleter (the pool only orders itself after it)
    wait_until(lambda: m.send("7002", 5)[0] == 503, 20 * SLOW, "sends to answer 503", interval=2)
    assert m.sh("systemctl is-active otp-deleter.service", check=False).stdout.strip() == "inactive"
    m.sh("systemctl start otp-deleter.service")
    wait_until(lambda: m.send("7003", 5)[0] == 200, 15 * SLOW, "sends back after the start")

    # a reboot with rows pending: each deleted at its time before the shutdown completes
    ids = {}
    for chat, expire in (("7101", 15), ("7102", 35)):
        status, body = m.send(chat, expire)
        assert status == 200, body
        ids[chat] = body["message_id"]
    t0, wall = time.monotonic(), time.time()
    container.podman("restart", "-t", STOP_TIMEOUT, m.name, timeout=300)
    took = time.monotonic() - t0
    assert took >= 25, f"the shutdown waited for the drain ({took:.0f} s)"
    assert m.booted(), "systemd came back"
    before = m.journal("otp-deleter.service", since=wall)
    deleted = [json.loads(l) for l in before.splitlines()
               if l.startswith("{") and '"message deleted"' in l]
    got = {d["message_id"]: d["lag_seconds"] for d in deleted}
    for chat, mid in ids.items():
        assert mid in got, f"message {mid} ({chat}) deleted before the shutdown:\n" + \
            m.sh("journalctl --merge --no-pager -o short-precise | tail -n 120").stdout
        assert 0 <= got[mid] < 1.5, f"deleted on time: lag {got[mid]}"
    lines = before.splitlines()
    stop = next(i for i, l in enumerate(lines) if "otp-deleter stopping" in l)
    start = next(i for i, l in enumerate(lines) if "otp-deleter started" in l)
    last = max(i for i, l in enumerate(lines) if '"message deleted"' in l)
    assert stop < last < start, "deleted during the shutdown, before the next boot's start"
    bot_log = m.journal("fakebot.service", since=wall)
    assert bot_log.count("deleteMessage") >= len(ids) or "deleteMessages" in bot_log, bot_log[-2000:]
    # back by itself (enabled units, the socket's layout remade at boot) and sending
    wait_until(lambda: m.sh("systemctl is-active nginx otp-deleter.service", check=False).returncode == 0,
               30 * SLOW, "the services back after the reboot")
    sent_and_deleted("7201")
    web_server_sees_sockets_only()
    for unit in ("otp-deleter.service", "otp-fcgi@0.service", "otp-fcgi@1.service"):
        text = m.journal(unit)
        assert TOKEN.split(":")[1] not in text
        bad = [l for l in text.splitlines() if '"level":"ERROR"' in l.replace(" ", "")]
        assert not bad, bad


def test_pool_stop_with_a_send_under_way_answers_it_and_its_message_is_deleted(installed):
    """`systemctl stop` of the whole pool (what `apt remove` and a shutdown do) while a send
    waits 3 s for the Bot API: the stop waits for it, the client gets its 200, the row is
    recorded and otp-deleter deletes the message at its time. A clean JSON error with nothing
    left in the chat would do too; a message delivered and never deleted would not."""
    m = installed
    gw, bot = MachineGateway(m), MachineBot(m)
    wait_until(gw.healthy, 15 * SLOW, "health")
    bot.config(method_latency_ms={"sendMessage": 3000})
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(gw.send_otp, {"chat_id": "7301", "otp": "4321", "expire_seconds": 5})
            wait_until(lambda: [c for c in bot.requests("sendMessage")
                                if str(c["params"].get("chat_id")) == "7301"],
                       10 * SLOW, "the send to reach the Bot API")
            t0 = time.monotonic()
            m.sh("systemctl stop 'otp-fcgi@*.socket' 'otp-fcgi@*.service'", timeout=60)
            took = time.monotonic() - t0
            r = answer.result(30)
    finally:
        bot.config(method_latency_ms={})
    try:
        assert m.sh("systemctl is-active 'otp-fcgi@*.service' 'otp-fcgi@*.socket'",
                    check=False).returncode != 0, "the pool is stopped"
        msgs = bot.messages("7301")
        if r.status != 200:
            assert r.json is not None and r.json["success"] is False, r
            assert all(msg["deleted_at"] for msg in msgs), ("an error left a message", r, msgs)
            return
        assert took >= 1.0, f"the stop waited for the send under way ({took:.1f} s)"
        [msg] = msgs
        assert msg["message_id"] == r.json["message_id"]
        [call] = [c for c in bot.requests("sendMessage") if str(c["params"].get("chat_id")) == "7301"]
        gone = wait_until(lambda: deleted_at(bot, "7301", msg["message_id"]), 5 + 10 * SLOW,
                          "the deletion of the message the stopping pool sent")
        assert gone >= parse_iso(r.json["delete_at"]), "never before the answered delete_at"
        assert gone >= call["answered_at"] + 5, "deleted early"
        assert gone - call["answered_at"] - 5 <= DEADLINE, f"{gone - call['answered_at'] - 5:.3f} s late"
        stopped = [l for l in m.json_lines("otp-fcgi@*.service", time.time() - 60)
                   if l.get("message") == "request" and l.get("path") == "/send-otp"]
        assert [l["status"] for l in stopped][-1:] == [200], stopped[-3:]
    finally:
        m.sh("systemctl start otp-fcgi@0.socket otp-fcgi@1.socket")
    wait_until(lambda: gw.send_otp({"chat_id": "7302", "otp": "4321", "expire_seconds": 5}).status == 200,
               15 * SLOW, "sends after the pool's sockets started again", interval=0.5)


def test_deleter_restart_under_traffic_deletes_nothing_early_and_loses_nothing(installed):
    """`systemctl restart otp-deleter` while codes are sent through nginx (as
    test_stop_drain.py's restart test, under systemd): the old deleter drains the rows pending at
    its stop, each at its time, the new one takes the newer ones; no send refused meanwhile."""
    m = installed
    gw, bot = MachineGateway(m), MachineBot(m)
    wait_until(gw.healthy, 15 * SLOW, "health")
    sent, answers, stop = [], [], threading.Event()
    rnd = random.Random(22)

    def traffic():
        i = 0
        while not stop.is_set():
            chat, expire = str(7400 + i), rnd.randint(5, 8)
            r = gw.send_otp({"chat_id": chat, "otp": "1234", "expire_seconds": expire})
            answers.append(r.status)
            if r.status == 200:
                sent.append((chat, r.json["message_id"], expire, parse_iso(r.json["delete_at"])))
            i += 1
            stop.wait(0.2)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_until(lambda: len(sent) >= 10, 15 * SLOW, "some codes pending")
        wall, t0 = time.time(), time.monotonic()
        m.sh("systemctl restart otp-deleter.service", timeout=60)
        took = time.monotonic() - t0
        restarted = len(sent)
        wait_until(lambda: len(sent) >= restarted + 10, 20 * SLOW, "more codes after the restart")
    finally:
        stop.set()
        t.join(30)
    assert set(answers) == {200}, f"sends refused around the restart: {answers}"
    assert took <= 8 + 2 * DEADLINE + 1, f"the stop waited for its rows only ({took:.1f} s)"
    wait_until(lambda: m.pending() == 0, 8 + 5 * DEADLINE, "every row to go", interval=0.5)
    calls = {str(c["params"].get("chat_id")): c["answered_at"] for c in bot.requests("sendMessage")}
    for chat, mid, expire, promised in sent:
        gone = deleted_at(bot, chat, mid)
        assert gone is not None, f"message {mid} in {chat} never deleted"
        assert gone >= promised, "never before the answered delete_at"
        assert gone >= calls[chat] + expire, f"{chat}: deleted {calls[chat] + expire - gone:.3f} s early"
        assert gone - calls[chat] - expire <= DEADLINE, \
            f"{chat}: deleted {gone - calls[chat] - expire:.3f} s late (bound {DEADLINE:.2f} s)"
    lines = m.json_lines("otp-deleter.service", wall - 1)
    stopping = [l for l in lines if l.get("message") == "otp-deleter stopping"]
    assert len(stopping) == 1 and stopping[0]["deleted_early"] == 0, stopping
    assert stopping[0]["pending_left"] > 0, "newer rows were handed to the next deleter"
    assert not [l for l in lines if "deleted before their delete_at" in l.get("message", "")]
    assert [l for l in lines if l.get("message") == "otp-deleter started"], "the next one started"


def test_black_box_suite_through_nginx(installed):
    stack = run_black_box_suite(installed, "nginx")
    assert stack.gw.get("/nope").headers["Server"].startswith("nginx")


def test_apache_proxy_fcgi_as_the_docs_say_serves_the_black_box_suite(installed):
    """A user who picks Apache: nginx disabled, Apache as Debian installs it (its default site
    on :80), then the docs' Apache block; the suite through Apache, and its Server header."""
    m = installed
    m.sh("systemctl disable --now nginx.service && systemctl enable --now apache2.service")
    try:
        run_block(m, "deb-apache", doc_blocks())
        stack = run_black_box_suite(m, "apache")
        assert stack.gw.get("/nope").headers["Server"].startswith("Apache")
        errors = m.sh("cat /var/log/apache2/error.log").stdout
        assert "AH01079" not in errors and "Permission denied" not in errors, errors[-3000:]
    finally:
        m.sh("systemctl disable --now apache2.service; systemctl enable --now nginx.service",
             check=False)


def test_remove_stops_it_and_purge_removes_what_it_made(installed):
    m = installed
    m.sh("apt-get remove -y otp-gateway", timeout=300)
    assert m.sh("systemctl is-active otp-deleter.service otp-fcgi@0.socket", check=False).returncode != 0
    assert m.sh("ls /run/otp-gateway/fcgi").stdout.strip() == "", "stopped sockets leave no file"
    m.sh("apt-get purge -y otp-gateway", timeout=300)
    assert m.sh("test -e /etc/otp-gateway || test -e /run/otp-gateway || getent passwd otp-gateway",
                check=False).returncode != 0
    # the token in no unit's line but the emulator's (it logs the URLs it is called at)
    out = m.sh("journalctl --no-pager -o json --output-fields=_SYSTEMD_UNIT,MESSAGE").stdout
    entries = [json.loads(l) for l in out.splitlines()]
    assert entries and not [e for e in entries if e.get("_SYSTEMD_UNIT") != "fakebot.service"
                            and TOKEN.split(":")[1] in str(e.get("MESSAGE"))]
