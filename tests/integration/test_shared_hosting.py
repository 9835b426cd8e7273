"""Shared hosting as conf/shared-hosting/ describes it, with no root and no daemon of our own:
Apache (the host's, with mod_fcgid and AllowOverride) runs as an unprivileged user and spawns
otp-fcgi through our .htaccess and otp-gateway.fcgi; otp-deleter runs only as cron would run
the shipped crontab line, one bounded run after another; the database goes where an account
without /run can write (/dev/shm/otp-gateway-<uid>/)."""
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (SLOW, TOKEN, Gateway, free_port, frontend_missing, parse_iso, stop_process,
                      wait_until)

HOST_CONF = """# the hosting provider's Apache, not ours: mod_fcgid, and .htaccess allowed to use it
ServerRoot /etc/apache2
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {apache}/apache.pid
DefaultRuntimeDir {apache}
Mutex file:{apache} default
ErrorLog {apache}/error.log
LogLevel warn
TypesConfig /etc/mime.types
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so
LoadModule fcgid_module /usr/lib/apache2/modules/mod_fcgid.so
FcgidIPCDir {apache}/fcgid
FcgidProcessTableFile {apache}/fcgid/shm
DocumentRoot {www}
<Directory {www}>
    AllowOverride FileInfo AuthConfig Indexes Options=ExecCGI,Indexes
    Require all granted
</Directory>
"""

SHARED = "conf/shared-hosting"


@pytest.fixture
def account(workdir, installed_tree):
    """A hosting account laid out as the recipe says, owned by a uid of no one else's."""
    if frontend_missing("apache-fcgid"):
        pytest.skip(frontend_missing("apache-fcgid"))
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user (setpriv)")
    uid = random.randrange(50000, 60000)
    home = Path(workdir) / "home"
    share = Path(installed_tree["share"])
    (home / "otp-gateway/bin").mkdir(parents=True)
    for prog in ("otp-fcgi", "otp-deleter"):
        shutil.copy2(Path(installed_tree["bin"]) / prog, home / "otp-gateway/bin")
    shutil.copytree(share / "www", home / "public_html")
    for f in (".htaccess", "otp-gateway.fcgi"):
        shutil.copy2(share / SHARED / f, home / "public_html" / f)
    (home / "apache/fcgid").mkdir(parents=True)
    for d, _, files in os.walk(home):
        os.chown(d, uid, uid)
        for f in files:
            os.chown(os.path.join(d, f), uid, uid)
    os.chmod(workdir, 0o711)
    yield uid, home
    shutil.rmtree(f"/dev/shm/otp-gateway-{uid}", ignore_errors=True)


def as_user(uid):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def test_shared_hosting_recipe_runs_without_root_and_without_daemons(account, bot, installed_tree):
    uid, home = account
    env_file = home / "otp-gateway/otp-gateway.env"
    example = (Path(installed_tree["share"]) / SHARED / "otp-gateway.env.example").read_text()
    assert "OTP_DB_PATH=" not in re.sub(r"^#.*$", "", example, flags=re.M), "no database path set"
    env_file.write_text(re.sub(r"^TELEGRAM_BOT_TOKEN=.*$", f"TELEGRAM_BOT_TOKEN={TOKEN}", example, flags=re.M)
                        + f"TELEGRAM_API_BASE={bot.url}\n")
    os.chown(env_file, uid, uid)
    os.chmod(env_file, 0o600)
    port = free_port()
    conf = home / "apache/host.conf"
    conf.write_text(HOST_CONF.format(port=port, apache=home / "apache", www=home / "public_html"))
    # cron's line, run every 2 s with runs of 3 s instead of every minute with runs of 60 s
    [line] = [l for l in (Path(installed_tree["share"]) / SHARED / "crontab").read_text().splitlines()
              if l and not l.startswith("#")]
    command = line.split(None, 5)[5].replace("--run-for 60", "--run-for 3")
    cron_env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    runs, stop_cron = [], threading.Event()

    def cron():
        while not stop_cron.is_set():
            runs.append(subprocess.Popen([*as_user(uid), "/bin/sh", "-c", command], env=cron_env,
                                         start_new_session=True))
            stop_cron.wait(2)
    apache = subprocess.Popen([*as_user(uid), "apache2", "-f", str(conf), "-D", "FOREGROUND"],
                              env={"PATH": "/usr/sbin:/usr/bin:/bin"}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ticker = threading.Thread(target=cron)
    ticker.start()
    gw = Gateway.__new__(Gateway)  # a client only
    gw.port = port
    try:
        wait_until(gw.healthy, 20 * SLOW, "a healthy gateway through .htaccess and cron's deleter")
        db = Path(f"/dev/shm/otp-gateway-{uid}/pending.db")
        assert db.exists() and db.stat().st_uid == uid, "the database in the account's /dev/shm directory"
        r = gw.send_otp({"chat_id": "9001", "otp": "5555", "expire_seconds": 5})
        assert r.status == 200, r
        delete_at = parse_iso(r.json["delete_at"])
        for path in ("/docs", "/openapi.json"):
            assert gw.get(path).status == 200, path
        assert gw.get("/nope").json == {"detail": "Not Found"}
        # deleted on time by whichever cron run holds the lock; health stays ok across handovers
        while not bot.messages("9001")[0]["deleted_at"]:
            assert gw.get("/health").status == 200, "a gap between cron's runs"
            assert time.time() <= delete_at + 1 + 2 * SLOW, "not deleted on time"
            time.sleep(0.1)
        gone = bot.messages("9001")[0]["deleted_at"]
        assert delete_at <= gone <= delete_at + 1 + 2 * SLOW
        assert len(runs) >= 3, "several cron runs took over from each other"
        assert (home / "otp-gateway/deleter.log").exists()
        ps = subprocess.run(["ps", "-o", "user:12=,comm=", "-u", str(uid)], capture_output=True, text=True).stdout
        assert "otp-fcgi" in ps, "mod_fcgid started otp-fcgi as the account's user"
        assert all(l.split()[0] == str(uid) for l in ps.splitlines()), "nothing ran as root"
    finally:
        stop_cron.set()
        ticker.join()
        stop_process(apache, signal.SIGTERM)
        for p in runs:
            p.wait(timeout=20)
        text = (home / "apache/error.log").read_text(errors="replace") if (home / "apache/error.log").exists() else ""
    assert TOKEN.split(":")[1] not in text
    assert "while otp-fcgi runs as uid" not in text, "one user: no mismatch to report"


def test_web_server_and_cron_as_different_users_get_a_503_naming_the_fix(account, bot,
                                                                           installed_tree):
    """Without suEXEC, Apache runs otp-fcgi as its own user while cron runs otp-deleter as the
    account's: each takes the default database of its uid and they never meet. otp-fcgi says
    so (a log line, and a 503 detail naming the fix) instead of a bare "not running"."""
    uid, home = account
    web_uid = uid + 10000  # the web server's user: not the account's
    env_file = home / "otp-gateway/otp-gateway.env"
    example = (Path(installed_tree["share"]) / SHARED / "otp-gateway.env.example").read_text()
    env_file.write_text(re.sub(r"^TELEGRAM_BOT_TOKEN=.*$", f"TELEGRAM_BOT_TOKEN={TOKEN}", example, flags=re.M)
                        + f"TELEGRAM_API_BASE={bot.url}\n")
    os.chown(env_file, uid, uid)
    os.chmod(env_file, 0o644)  # what the web server's user needs to start at all
    for d, _, files in os.walk(home / "apache"):  # Apache's own files are its user's
        os.chown(d, web_uid, web_uid)
        for f in files:
            os.chown(os.path.join(d, f), web_uid, web_uid)
    port = free_port()
    conf = home / "apache/host.conf"
    conf.write_text(HOST_CONF.format(port=port, apache=home / "apache", www=home / "public_html"))
    [line] = [l for l in (Path(installed_tree["share"]) / SHARED / "crontab").read_text().splitlines()
              if l and not l.startswith("#")]
    command = line.split(None, 5)[5]
    cron_env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    deleter_log = home / "otp-gateway/deleter.log"
    cron = subprocess.Popen([*as_user(uid), "/bin/sh", "-c", command], env=cron_env,
                            start_new_session=True)
    apache = subprocess.Popen([*as_user(web_uid), "apache2", "-f", str(conf), "-D", "FOREGROUND"],
                              env={"PATH": "/usr/sbin:/usr/bin:/bin"}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw = Gateway.__new__(Gateway)  # a client only
    gw.port = port
    error_log = home / "apache/error.log"
    try:
        wait_until(lambda: deleter_log.exists() and "otp-deleter started" in deleter_log.read_text(),
                   10 * SLOW, "the account's otp-deleter")

        def answered():
            try:
                return gw.get("/health")
            except OSError:
                return None
        health = wait_until(answered, 20 * SLOW, "Apache and otp-fcgi")
        assert health.status == 503 and health.json["failed_check"] == "deleter", health
        r = gw.send_otp({"chat_id": "9002", "otp": "5555"})
        assert r.status == 503, r
        detail = r.json["detail"]
        assert "otp-deleter runs as another user" in detail
        assert "suEXEC" in detail and "OTP_STORE" in detail, detail
        assert str(uid) not in detail and "/dev/shm" not in detail, "no paths or uids to clients"
        assert gw.get("/health").json["detail"] == detail
        assert bot.requests("sendMessage") == [], "nothing sent that nobody would delete"
        wait_until(lambda: error_log.exists() and "while otp-fcgi runs as uid" in error_log.read_text(),
                   5 * SLOW, "the log line")
        [warning] = [l for l in error_log.read_text().splitlines() if "while otp-fcgi runs as uid" in l]
        assert f"otp-deleter runs as uid {uid}" in warning and f"otp-gateway-{uid}" in warning
        assert f"runs as uid {web_uid} with /dev/shm/otp-gateway-{web_uid}/pending.db" in warning
    finally:
        stop_process(apache, signal.SIGTERM)
        stop_process(cron, signal.SIGTERM)
        shutil.rmtree(f"/dev/shm/otp-gateway-{web_uid}", ignore_errors=True)
