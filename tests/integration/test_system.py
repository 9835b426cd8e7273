"""The Debian package as a user installs it: Debian 12 booted with systemd as PID 1 in podman
(from the local mmdebstrap base of container.py), the .deb installed with apt, then
docs/deploy.md's marked blocks (```sh id=deb-...) run as written, the Bot API pointed at the
emulator (a service inside the container; only the token's value differs from the docs). Then
/run as the web server sees it, a send through nginx deleted on time, the deleter's stop not
undone by the pool, and a reboot (`podman restart`) with rows pending: each deleted before the
shutdown completes, the service back by itself. Run by `make test-system` (root, podman)."""
import json
import os
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, SLOW, TOKEN, wait_until
import container

DEB_DIR = ROOT / os.environ.get("OTP_DEB_DIR", "build/deb")
IMAGE = "localhost/otp-test-system:12"
DOC_TOKEN = "123456789:replace-with-your-token"
# podman stop/restart wait 10 s before SIGKILL by default: the deleter's drain needs its 70 s
STOP_TIMEOUT = "120"


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
        return self.sh(f"journalctl -q --merge {when} -u {unit} -o cat --no-pager").stdout


@pytest.fixture(scope="module")
def machine():
    why = container.unavailable()
    if why:
        pytest.skip(why)
    deb = deb_file()
    if deb is None:
        pytest.skip(f"no .deb in {DEB_DIR} (make deb; make test-system builds it first)")
    build_image(deb)
    m = Machine()
    container.podman("run", "-d", "--name", m.name, "--systemd=always", "--network", "none",
                     "--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit",
                     "nproc=4096:4096", "--stop-timeout", STOP_TIMEOUT,
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


def test_package_installed_with_the_docs_steps_serves_and_survives_a_reboot(machine):
    m, blocks = machine, doc_blocks()
    assert {"deb-install", "deb-token", "deb-start", "deb-nginx"} <= set(blocks), sorted(blocks)
    run_block(m, "deb-install", blocks)
    # installed, nothing started yet (the token file is the admin's); no token line shipped
    env = m.sh("cat /etc/otp-gateway/otp-gateway.env").stdout
    assert not re.search(r"^\s*TELEGRAM_BOT_TOKEN", env, re.M)
    assert m.sh("stat -c '%U:%G %a' /etc/otp-gateway /etc/otp-gateway/otp-gateway.env").stdout.split() == \
        ["root:otp-gateway", "750", "root:otp-gateway", "640"]
    assert m.sh("systemctl is-active otp-deleter.service", check=False).stdout.strip() == "inactive"
    run_block(m, "deb-token", blocks)
    # the one test-only step: the Bot API is the emulator inside the machine
    m.sh("echo TELEGRAM_API_BASE=http://127.0.0.1:8081 >> /etc/otp-gateway/otp-gateway.env")
    run_block(m, "deb-start", blocks)
    run_block(m, "deb-nginx", blocks)
    assert "duplicate MIME type" not in m.sh("nginx -t 2>&1").stdout

    def sent_and_deleted(chat, expire=5):
        status, body = m.send(chat, expire)
        assert status == 200 and body["success"], body
        wait_until(lambda: m.messages(chat) and m.messages(chat)[0]["deleted_at"],
                   (expire + 10) * SLOW, f"the message to {chat} deleted")
        return body

    def web_server_sees_sockets_only():
        www = "runuser -u www-data --"
        m.sh(f"{www} test -r /run/otp-gateway/fcgi/otp-fcgi-0.sock -a -w /run/otp-gateway/fcgi/otp-fcgi-0.sock")
        for path in ("/run/otp-gateway/db", "/etc/otp-gateway/otp-gateway.env",
                     "/etc/otp-gateway/telegram-bot-token"):
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
    m.sh("systemctl restart otp-deleter.service otp-fcgi@0.service otp-fcgi@1.service")
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

    # remove stops it; purge removes what the package and its services made
    m.sh("apt-get remove -y otp-gateway", timeout=300)
    assert m.sh("systemctl is-active otp-deleter.service otp-fcgi@0.socket", check=False).returncode != 0
    assert m.sh("ls /run/otp-gateway/fcgi").stdout.strip() == "", "stopped sockets leave no file"
    m.sh("apt-get purge -y otp-gateway", timeout=300)
    assert m.sh("test -e /etc/otp-gateway || test -e /run/otp-gateway || getent passwd otp-gateway",
                check=False).returncode != 0
