"""The host around the gateway (issue #14): core dumps, the database's directory and files,
a database removed or replaced while running, a full disk, shutdown interleavings."""
import os
import resource
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, SLOW, TOKEN, wait_until

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def private_dir(parent, name, uid):
    """A directory owned by uid, mode 0700, reachable through parent (made traversable)."""
    os.chmod(parent, 0o711)
    d = Path(parent) / name
    d.mkdir(mode=0o700)
    if IS_ROOT:
        os.chown(d, uid, uid)
    return d


def start_unprivileged(argv, env, stdin=None, log=None):
    """Starts argv as NOBODY when we are root (so that /proc tells dumpable from not), else as
    ourselves."""
    kw = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if IS_ROOT else {}

    def allow_cores():  # a soft core limit above 0, so that "allowed" is visible
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    return subprocess.Popen(argv, env=env, stdin=stdin, stdout=log, stderr=log,
                            preexec_fn=allow_cores, start_new_session=True, **kw)


def core_limits(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit in /proc/PID/limits")


def proc_owner(pid):
    """The files in /proc/PID (environ, mem, status…; not the directory itself) belong to root
    while the process is not dumpable (PR_SET_DUMPABLE 0)."""
    return os.stat(f"/proc/{pid}/environ").st_uid


def wait_started(proc, logfile, marker):
    wait_until(lambda: proc.poll() is not None or marker in Path(logfile).read_text(),
               10 * SLOW, marker)
    assert proc.poll() is None, Path(logfile).read_text()


@pytest.mark.parametrize("allow", [None, "1"])
def test_core_dumps_are_off_in_both_programs_unless_allowed(workdir, bot, allow):
    if not IS_ROOT:
        pytest.skip("telling a dumpable process from another needs a second uid: run as root")
    d = private_dir(workdir, "db", NOBODY)
    env = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_API_BASE": bot.url, "OTP_DB_PATH": f"{d}/pending.db"}
    if allow:
        env["OTP_ALLOW_CORE_DUMPS"] = allow
    logfile = d.parent / "programs.log"
    procs = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = d.parent / "fcgi.sock"
    listener.bind(str(sock_path))
    listener.listen(16)
    try:
        with open(logfile, "ab") as log:
            deleter = start_unprivileged([str(BUILD / "otp-deleter")], env, log=log)
            procs.append(deleter)
            wait_started(deleter, logfile, "otp-deleter started")
            fcgi = start_unprivileged([str(BUILD / "otp-fcgi")], env, stdin=listener, log=log)
            procs.append(fcgi)
            wait_started(fcgi, logfile, "otp-fcgi started")
        for p in procs:
            if allow:
                assert proc_owner(p.pid) == NOBODY, "dumpable when OTP_ALLOW_CORE_DUMPS=1"
                assert core_limits(p.pid)[0] != "0", "the core limit is left as inherited"
            else:
                assert proc_owner(p.pid) == 0, "PR_SET_DUMPABLE 0: /proc/PID/environ is root's"
                assert core_limits(p.pid) == ["0", "0"], "RLIMIT_CORE 0, soft and hard"
        text = logfile.read_text()
        assert ("core dumps allowed" in text) == bool(allow), text
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        listener.close()
