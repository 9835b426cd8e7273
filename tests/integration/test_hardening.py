"""The host around the gateway (issue #14): core dumps, the database's directory and files,
a database removed or replaced while running, a full disk, shutdown interleavings."""
import os
import random
import resource
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, SLOW, TOKEN, stop_process, wait_until

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
           "TELEGRAM_API_BASE": bot.url, "OTP_DB_PATH": f"{d}/pending.db",
           "ASAN_OPTIONS": "disable_coredump=0"}  # ASan would set the core limit to 0 itself
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


# ---- the database's directory and files -------------------------------------------------------

@pytest.mark.sqlite_only
def test_gateway_files_are_private(gateway):
    r = gateway.send_otp({"chat_id": "4242", "otp": "123456", "expire_seconds": 60})
    assert r.status == 200, r
    for suffix in ("", "-wal", "-shm", ".lock", ".deleter.lock"):
        mode = os.stat(gateway.db_path + suffix).st_mode & 0o777
        assert mode == 0o600, f"pending.db{suffix} has mode {mode:04o}"


@pytest.mark.parametrize("program", ["otp-fcgi", "otp-deleter"])
def test_a_directory_others_may_write_is_refused_with_one_line(workdir, program):
    shared = Path(workdir) / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_API_BASE": "http://127.0.0.1:9", "OTP_DB_PATH": f"{shared}/pending.db"}
    # otp-fcgi checks its database before it looks for a FastCGI socket
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{workdir}/sock")
    listener.listen(1)
    try:
        p = subprocess.run([str(BUILD / program)], env=env, stdin=listener, capture_output=True,
                           text=True, timeout=20 * SLOW)
    finally:
        listener.close()
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert str(shared) in lines[0] and "writable by its group or others" in lines[0], lines[0]
    # the advice is a private directory in it, never a change to a directory others share
    assert f"mkdir -m 0700 {shared}/otp-gateway" in lines[0], lines[0]
    assert "set OTP_DB_PATH to a file there" in lines[0], lines[0]
    assert "chmod" not in lines[0], lines[0]
    assert not (shared / "pending.db").exists()
    # the directory is checked before anything is made in it, the deleter's lock included
    assert sorted(p.name for p in shared.iterdir()) == []


def run_deleter_on(own):
    """otp-deleter alone with its database in directory own, to the end of its start-up."""
    env = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_API_BASE": "http://127.0.0.1:9", "OTP_DB_PATH": f"{own}/pending.db"}
    return subprocess.run([str(BUILD / "otp-deleter")], env=env, capture_output=True, text=True,
                          timeout=20 * SLOW)


@pytest.mark.parametrize("dangling", [True, False])
def test_a_symlink_planted_as_the_deleters_lock_is_refused_and_not_followed(workdir, dangling):
    own = Path(workdir) / "own"
    own.mkdir(mode=0o700)
    elsewhere = Path(workdir) / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    target = elsewhere / "planted"
    if not dangling:
        target.write_bytes(b"")
        target.chmod(0o644)
        before = target.stat()
    (own / "pending.db.deleter.lock").symlink_to(target)
    p = run_deleter_on(own)
    assert p.returncode == 1, p
    [line] = p.stderr.strip().splitlines()
    assert f"lock file {own}/pending.db.deleter.lock is a symbolic link: refusing it" in line, line
    if dangling:
        assert not target.exists() and not target.is_symlink()
    else:
        after = target.stat()
        assert (after.st_mode, after.st_size, after.st_mtime_ns) == \
            (before.st_mode, before.st_size, before.st_mtime_ns)
    assert sorted(p.name for p in elsewhere.iterdir()) == ([] if dangling else ["planted"])
    assert not (own / "pending.db").exists()


def test_a_directory_its_group_may_write_is_refused_naming_the_fix(workdir):
    own = Path(workdir) / "own"
    own.mkdir()
    own.chmod(0o770)
    p = run_deleter_on(own)
    assert p.returncode == 1, p
    [line] = p.stderr.strip().splitlines()
    assert f"{own} is writable by its group or others (mode 0770)" in line, line
    assert f"chmod g-w {own}" in line, line
    assert not (own / "pending.db").exists()


def test_dev_shm_fallback_of_another_user_is_refused(workdir):
    if not IS_ROOT:
        pytest.skip("needs root to act as two users")
    uid = NOBODY
    fallback = Path(f"/dev/shm/otp-gateway-{uid}")
    if fallback.exists() or Path("/run/otp-gateway").exists() or os.path.ismount("/run"):
        pytest.skip(f"{fallback} or /run/otp-gateway exists, or /run may be tmpfs: not ours to change")
    fallback.mkdir()
    try:
        fallback.chmod(0o777)  # root's, open to all: what another user could leave there
        env = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
               "TELEGRAM_API_BASE": "http://127.0.0.1:9"}
        p = subprocess.run([str(BUILD / "otp-fcgi"), "--check-config"], env=env,
                           capture_output=True, text=True, timeout=20 * SLOW,
                           user=uid, group=uid, extra_groups=[])
        assert p.returncode == 1, p
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and str(fallback) in lines[0] and "refusing" in lines[0], p.stderr
        assert list(fallback.iterdir()) == []
    finally:
        for f in fallback.iterdir():
            f.unlink()
        fallback.rmdir()


# ---- the database removed while running --------------------------------------------------------

REOPENED = "was removed or replaced while in use"


def reopen_lines(gw):
    return [(l["program"], l["pid"]) for l in gw.log_lines() if REOPENED in l.get("message", "")]


def sends_work(gw, chat):
    r = gw.send_otp({"chat_id": chat, "otp": "1234", "expire_seconds": 5})
    return r if r.status == 200 else None


def recovers_after(gw, bot, remove, chat):
    """Removes files, then checks that sends and /health come back within a second (SLOW
    scaled) and that what is sent then is deleted."""
    bound = 1.0 * SLOW + 0.5  # a second, plus the requests' own time on a loaded machine
    remove()
    t0 = time.monotonic()
    r = wait_until(lambda: sends_work(gw, chat), 10 * SLOW, "a send after the removal")
    took = time.monotonic() - t0
    assert took <= bound, f"sends came back {took:.2f} s after the removal (bound {bound:.2f} s)"
    wait_until(gw.healthy, bound, "/health ok again")
    mid = r.json["message_id"]
    wait_until(lambda: any(m["message_id"] == mid and m["deleted_at"] for m in bot.messages(chat)),
               5 + 5 * SLOW, "the message sent after the reopen to be deleted")


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
@pytest.mark.sqlite_only
def test_removed_database_is_reopened_by_every_process_and_logged_once(make_gateway, bot):
    gw = make_gateway(env={"DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    # both otp-fcgi processes hold open handles (concurrent requests spread over them)
    with ThreadPoolExecutor(8) as pool:
        assert all(r.status == 200 for r in pool.map(
            lambda i: gw.send_otp({"chat_id": str(7000 + i), "otp": "1234", "expire_seconds": 60}),
            range(8)))
    fcgi_pids = [p for p in gw.children_left()
                 if Path(f"/proc/{p}/comm").read_text().strip() == "otp-fcgi"]
    assert len(fcgi_pids) == 2, fcgi_pids
    assert reopen_lines(gw) == []

    # 1. the database alone: its -wal and -shm stay behind, still in use by every process
    recovers_after(gw, bot, lambda: os.unlink(gw.db_path), "7100")
    # every process notices within a second, idle or not, and says so once
    wait_until(lambda: len(set(reopen_lines(gw))) >= 1 + len(fcgi_pids), 2 * SLOW,
               "each process's log line")
    lines = reopen_lines(gw)
    assert len(lines) == len(set(lines)), f"one line per process, not per thread: {lines}"
    assert ("otp-deleter", gw.deleter.pid) in lines
    assert {pid for prog, pid in lines if prog == "otp-fcgi"} == set(fcgi_pids)
    wait_until(lambda: "otp_database_reopened_total" in gw.get("/metrics").text, 2 * SLOW,
               "the reopen counted in /metrics")

    # 2. all three files
    before = len(lines)
    def remove_all():
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(gw.db_path + suffix)
            except FileNotFoundError:
                pass
    recovers_after(gw, bot, remove_all, "7200")
    wait_until(lambda: len(reopen_lines(gw)) >= 2 * before, 2 * SLOW, "the second round of lines")
    lines = reopen_lines(gw)
    assert len(lines) == 2 * before, lines
    text = gw.log_text()
    for marker in ("disk I/O error", "malformed"):
        assert marker not in text, f"{marker!r} in the logs"


# ---- bounded disk ------------------------------------------------------------------------------

WAL_BOUND = 64 * (4096 + 24) + 32 + 64 * 1024  # wal_autocheckpoint pages, header, slack


@pytest.mark.sqlite_only
def test_the_wal_stays_small_under_writes(gateway):
    # each /health writes a heartbeat row: 400 writes would make a 1.6 MB WAL at SQLite's
    # default checkpoint (1000 pages); ours restarts it every 64 pages
    for _ in range(400):
        assert gateway.get("/health").status == 200
    size = os.path.getsize(gateway.db_path + "-wal")
    assert size <= WAL_BOUND, f"the WAL is {size} bytes"


@pytest.mark.sqlite_only
def test_idle_processes_write_only_the_heartbeat(gateway):
    time.sleep(1.5)  # past start-up's writes
    before = os.path.getsize(gateway.db_path + "-wal")
    time.sleep(5)
    grew = os.path.getsize(gateway.db_path + "-wal") - before
    # one heartbeat a second is one WAL frame (a 4 KiB page) a second; metrics with nothing
    # to add write nothing
    assert grew <= 7 * (4096 + 24), f"the WAL grew {grew} bytes in 5 s of idling"


def mount_tmpfs(path, size):
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs (a disk that fills) needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")


def fill(path):
    f = open(path, "wb", buffering=0)
    try:
        while True:
            f.write(b"\0" * 4096)
    except OSError:
        pass
    finally:
        f.close()


@pytest.mark.sqlite_only
def test_full_disk_fails_closed_and_recovers(make_gateway, bot, workdir):
    disk = Path(workdir) / "disk"
    disk.mkdir(mode=0o700)
    mount_tmpfs(disk, "2m")
    gw = None
    try:
        gw = make_gateway(env={"OTP_DB_PATH": f"{disk}/pending.db",
                               "DELETER_HEARTBEAT_STALE_SECONDS": "2"})
        gw.db_path = f"{disk}/pending.db"
        assert gw.send_otp({"chat_id": "600", "otp": "1234", "expire_seconds": 5}).status == 200
        # a reader's snapshot keeps the WAL from restarting: every write must grow it
        reader = sqlite3.connect(gw.db_path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM pending_deletions").fetchall()
        fill(disk / "filler")

        def refused():
            r = gw.send_otp({"chat_id": "601", "otp": "1234", "expire_seconds": 5})
            return r if r.status != 200 else None
        r = wait_until(refused, 10 * SLOW, "a refused send on the full disk")
        assert r.status in (500, 503), r
        for _ in range(5):
            r = gw.send_otp({"chat_id": "602", "otp": "1234", "expire_seconds": 5})
            assert r.status in (500, 503), r
        wait_until(lambda: gw.get("/health").status == 503, 5 * SLOW, "/health degraded")

        # space returns
        reader.close()
        (disk / "filler").unlink()
        r = wait_until(lambda: sends_work(gw, "603"), 10 * SLOW, "a send once space returned")
        wait_until(gw.healthy, 5 * SLOW, "/health ok again")

        # every message Telegram has is deleted, none asked about more than twice
        def all_gone():
            return all(m["deleted_at"] for m in bot.messages())
        wait_until(all_gone, 10 + 10 * SLOW, "every message to be deleted")
        asked = {}
        for req in bot.requests("deleteMessage") + bot.requests("deleteMessages"):
            p = req["params"]
            for mid in p.get("message_ids") or [p.get("message_id")]:
                asked[(str(p.get("chat_id")), mid)] = asked.get((str(p.get("chat_id")), mid), 0) + 1
        assert asked and max(asked.values()) <= 2, asked
    finally:
        if gw is not None:
            gw.stop()
        subprocess.run(["umount", "-l", str(disk)])


# ---- shutdown ----------------------------------------------------------------------------------

def fcgi_children(gw):
    found = []
    for pid in gw.children_left():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "otp-fcgi":
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_every_otp_fcgi_exits_with_its_lighttpd_in_any_interleaving(make_gateway, bot):
    """lighttpd stopped at random moments (while it spawns its children, while they start,
    while they serve) under load, 30 times: each time every otp-fcgi is gone within a bound."""
    gw = make_gateway(env={"TELEGRAM_TIMEOUT_SECONDS": "1", "TELEGRAM_SEND_WAIT_MS": "200"},
                      deleter=True)
    gw.stop_deleter()  # sends are answered 503 at once: the load is requests, not Telegram
    stop_load = threading.Event()

    def load():
        while not stop_load.is_set():
            try:
                gw.request("POST", "/send-otp", body={"chat_id": "1", "otp": "1234"},
                           headers={"Content-Type": "application/json"}, timeout=2)
            except OSError:
                time.sleep(0.01)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    bound = 3.0 * SLOW  # the listening socket is looked at every second; requests end fast
    rng = random.Random(14)
    worst = 0.0
    try:
        for i in range(30):
            stop_process(gw.lighttpd)
            wait_until(lambda: not fcgi_children(gw), 10 * SLOW, "the previous round's otp-fcgi")
            gw.lighttpd = gw._spawn("lighttpd", ["lighttpd", "-D", "-f", str(ROOT / "lighttpd.conf")])
            time.sleep(rng.choice([0, 0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3]))
            gw.lighttpd.send_signal(signal.SIGTERM)
            gw.lighttpd.wait(10 * SLOW)
            t0 = time.monotonic()
            wait_until(lambda: not fcgi_children(gw), bound,
                       f"otp-fcgi to exit after lighttpd (round {i})")
            worst = max(worst, time.monotonic() - t0)
    finally:
        stop_load.set()
        for t in threads:
            t.join()
    print(f"slowest exit after lighttpd: {worst:.2f} s")
