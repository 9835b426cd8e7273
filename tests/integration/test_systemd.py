"""The systemd units as `make install` installs them: `systemd-analyze verify` finds nothing to
say about them, and otp-fcgi@.service runs as socket activation hands it its socket
(systemd-socket-activate: the listening socket as standard input, StandardInput=socket),
with the unit's own environment, the token from a credentials directory (LoadCredential) and
the database in $RUNTIME_DIRECTORY (RuntimeDirectory=otp-gateway)."""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import SLOW, TOKEN, make_install, wait_until
from test_fastcgi_direct import fastcgi_stream

# runs the units' programs as systemd would: run alone (tests/run-tests.sh)
pytestmark = [pytest.mark.serial,
              pytest.mark.skipif(not shutil.which("systemd-analyze") or
                                 not shutil.which("systemd-socket-activate"),
                                 reason="systemd-analyze or systemd-socket-activate is missing (package systemd)")]


@pytest.fixture(scope="module")
def prefix_tree():
    """Installed with PREFIX (no DESTDIR), so the units' ExecStart paths exist here."""
    d = tempfile.mkdtemp(prefix="otp-prefix-", dir="/dev/shm")
    try:
        yield make_install("", d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def units(tree):
    return Path(tree["prefix"]) / "lib/systemd/system"


def verify(*paths):
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def test_installed_units_pass_systemd_analyze_verify(prefix_tree, tmp_path):
    d = units(prefix_tree)
    assert sorted(p.name for p in d.iterdir()) == ["otp-deleter.service", "otp-fcgi@.service",
                                                    "otp-fcgi@.socket"]
    # templates are verified as an instance, beside their socket
    for name in ("otp-fcgi@.service", "otp-fcgi@.socket", "otp-deleter.service"):
        shutil.copy(d / name, tmp_path / name.replace("@.", "@0."))
    rc, out = verify(tmp_path / "otp-deleter.service", tmp_path / "otp-fcgi@0.service",
                     tmp_path / "otp-fcgi@0.socket")
    # verify exits 0 on some problems (unknown keys are warnings): nothing at all must be said
    assert (rc, out) == (0, ""), out
    text = (d / "otp-fcgi@.service").read_text()
    assert f"ExecStart={prefix_tree['bin']}/otp-fcgi\n" in text, "@BINDIR@ is filled in"
    # the check can fail: a unit with a mistake is reported
    bad = tmp_path / "otp-deleter.service"
    bad.write_text(bad.read_text().replace("ProtectSystem=strict", "ProtectSystem=strict\nProtectSytem=yes"))
    rc, out = verify(bad)
    assert "Unknown key" in out, out


@pytest.mark.parametrize("name", ["otp-deleter.service", "otp-fcgi@.service"])
def test_units_are_hardened_and_hold_no_secret(name):
    from conftest import ROOT
    text = (ROOT / "conf/systemd" / name).read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "RuntimeDirectory=otp-gateway/db", "RuntimeDirectoryMode=0700", "User=otp-gateway",
                 "LoadCredential=telegram-bot-token:/etc/otp-gateway/telegram-bot-token",
                 "Environment=TELEGRAM_BOT_TOKEN_FILE=%d/telegram-bot-token"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "DynamicUser" not in text, "two units share the database: one dedicated user"
    assert not re.search(r"^Environment=TELEGRAM_BOT_TOKEN=", text, re.M)


def unit_environment(path, credentials):
    env = {}
    for value in re.findall(r"^Environment=(.*)$", path.read_text(), re.M):
        k, v = value.split("=", 1)
        env[k] = v.replace("%d", str(credentials))
    return env


def test_socket_activated_otp_fcgi_serves_with_the_units_settings(prefix_tree, workdir, bot):
    d = units(prefix_tree)
    exec_start = re.search(r"^ExecStart=(\S+)$", (d / "otp-fcgi@.service").read_text(), re.M).group(1)
    assert re.search(r"^StandardInput=socket$", (d / "otp-fcgi@.service").read_text(), re.M)
    creds, runtime = Path(workdir) / "credentials", Path(workdir) / "runtime"
    creds.mkdir(mode=0o700)
    runtime.mkdir(mode=0o750)
    (creds / "telegram-bot-token").write_text(TOKEN + "\n")
    # the admin's settings file (the unit names /etc/otp-gateway/otp-gateway.env)
    env_file = Path(workdir) / "otp-gateway.env"
    env_file.write_text(f"TELEGRAM_API_BASE={bot.url}\nLOG_LEVEL=DEBUG\n")
    env = unit_environment(d / "otp-fcgi@.service", creds)
    assert env["OTP_ENV_FILE"] == "/etc/otp-gateway/otp-gateway.env"
    env.update(OTP_ENV_FILE=str(env_file), RUNTIME_DIRECTORY=str(runtime))
    assert env == unit_environment(d / "otp-deleter.service", creds) | {
        "OTP_ENV_FILE": str(env_file), "RUNTIME_DIRECTORY": str(runtime)}
    sock = Path(workdir) / "otp-fcgi-0.sock"
    log = open(Path(workdir) / "otp-fcgi.log", "wb")
    # systemd passes no environment but the unit's: neither does systemd-socket-activate
    activator = subprocess.Popen(["systemd-socket-activate", "--inetd", "-l", str(sock),
                                  *[f"-E{k}={v}" for k, v in env.items()], exec_start],
                                 stdout=log, stderr=log, start_new_session=True, env={})
    deleter = subprocess.Popen([exec_start.replace("otp-fcgi", "otp-deleter")], env=env,
                               stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(sock.exists, 5 * SLOW, "the listening socket")
        assert os.readlink(f"/proc/{activator.pid}/exe").endswith("systemd-socket-activate"), \
            "otp-fcgi starts on the first connection, not before"
        wait_until(lambda: (runtime / "pending.db").exists(), 5 * SLOW,
                   "the database in $RUNTIME_DIRECTORY")
        get = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/health", "SCRIPT_NAME": "/health",
               "REMOTE_ADDR": "127.0.0.1"}
        wait_until(lambda: fastcgi_stream(sock, get, [])[0].startswith("Status: 200"), 10 * SLOW,
                   "a healthy socket-activated otp-fcgi")
        assert os.readlink(f"/proc/{activator.pid}/exe") == exec_start
        # due in 5 s: the deleter's stop below drains it (deletes it at its delete_at) first
        body = b'{"chat_id": "8001", "otp": "1234", "expire_seconds": 5}'
        head, text = fastcgi_stream(sock, {"REQUEST_METHOD": "POST", "REQUEST_URI": "/send-otp",
                                           "SCRIPT_NAME": "/send-otp", "REMOTE_ADDR": "127.0.0.1",
                                           "CONTENT_TYPE": "application/json",
                                           "CONTENT_LENGTH": str(len(body))}, [body])
        assert head.startswith("Status: 200"), (head, text)
        assert len(bot.messages("8001")) == 1, "sent with the token from the credentials directory"
    finally:
        for p in (activator, deleter):
            p.terminate()
            p.wait(timeout=20)
        log.close()
    assert activator.returncode == 0 and deleter.returncode == 0
    assert TOKEN.split(":")[1] not in (Path(workdir) / "otp-fcgi.log").read_text()
