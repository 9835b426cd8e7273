"""Start-up: bad settings stop a program with one line naming the setting; `make run` (conf/run.sh)
in sandbox mode serves the README's example and stops everything it started."""
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, SLOW, TOKEN, free_port, parse_iso, wait_until, Gateway, FakeBot

BASE_ENV = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": "http://127.0.0.1:9"}


def run_program(name, env, *args):
    return subprocess.run([str(BUILD / name), *args], env=env, capture_output=True, text=True,
                          timeout=20)


@pytest.mark.parametrize("program", ["otp-fcgi", "otp-deleter"])
@pytest.mark.parametrize("setting, value, needle", [
    ("PORT", "abc", "PORT must be an integer"),
    ("PORT", "70000", "PORT must be between 1 and 65535"),
    ("MAX_EXPIRE_SECONDS", "3", "MIN_EXPIRE_SECONDS (5) is above MAX_EXPIRE_SECONDS (3)"),
    ("DEFAULT_EXPIRE_SECONDS", "90", "DEFAULT_EXPIRE_SECONDS must be between 5 and 60"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be"),
    ("TELEGRAM_BOT_TOKEN", "not-a-token", "TELEGRAM_BOT_TOKEN is malformed"),
    ("TELEGRAM_BOT_TOKEN", "", "TELEGRAM_BOT_TOKEN is not set"),
    ("RATE_LIMIT_PER_USER", "0", "RATE_LIMIT_PER_USER must be between"),
])
def test_bad_setting_stops_the_program_with_one_line_naming_it(workdir, program, setting, value, needle):
    env = dict(BASE_ENV, OTP_DB_PATH=f"{workdir}/db", **{setting: value})
    extra = ["--check-config"] if program == "otp-fcgi" else []
    p = run_program(program, env, *extra)
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert needle in lines[0]
    assert "not-a-token" not in lines[0], "a token is never echoed"


def test_sandbox_needs_to_be_explicit(workdir):
    env = {"PATH": os.environ["PATH"], "OTP_DB_PATH": f"{workdir}/db"}
    assert "TELEGRAM_BOT_TOKEN is not set" in run_program("otp-deleter", env).stderr
    env.update(OTP_SANDBOX="1")
    assert "TELEGRAM_API_BASE must point at the emulator" in run_program("otp-deleter", env).stderr


def test_env_file_supplies_settings_and_environment_wins(workdir):
    env_file = Path(workdir) / "otp.env"
    env_file.write_text("# settings\nTELEGRAM_BOT_TOKEN='%s'\nPORT=abc\n" % TOKEN)
    env = {"PATH": os.environ["PATH"], "OTP_ENV_FILE": str(env_file),
           "TELEGRAM_API_BASE": "http://127.0.0.1:9", "OTP_DB_PATH": f"{workdir}/db"}
    p = run_program("otp-fcgi", env, "--check-config")
    assert p.returncode == 1 and "PORT must be an integer" in p.stderr
    p = run_program("otp-fcgi", dict(env, PORT="8080"), "--check-config")
    assert p.returncode == 0, p.stderr


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def processes_with_marker(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_make_run_sandbox_serves_the_readme_example_and_stops_cleanly(workdir):
    port = free_port()
    marker = "OTP_TEST_MARKER=" + uuid.uuid4().hex
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "TELEGRAM_BOT_TOKEN": "",
           "OTP_DB_PATH": f"{workdir}/sandbox.db", "SANDBOX_LATENCY_MS": "100",
           marker.split("=")[0]: marker.split("=")[1]}
    log = open(Path(workdir) / "run.log", "wb")
    proc = subprocess.Popen([str(ROOT / "conf/run.sh"), str(BUILD)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = lambda: (Path(workdir) / "run.log").read_text()
        wait_until(lambda: "listening on" in text() and proc.poll() is None, 15 * SLOW, "make run")
        assert "SANDBOX MODE" in text()
        api_base = re.search(r"answers at (http://127\.0\.0\.1:\d+)", text()).group(1)
        bot = FakeBot.__new__(FakeBot)
        bot.port = int(api_base.rsplit(":", 1)[1])

        gw = Gateway.__new__(Gateway)
        gw.port = port

        wait_until(gw.healthy, 10 * SLOW, "health")
        assert gw.get("/health").json["mode"] == "sandbox"
        # the README's curl example, with a 5 s expiry to keep the test short
        p = subprocess.run(["curl", "-sS", "-X", "POST", f"http://localhost:{port}/send-otp",
                            "-H", "Content-Type: application/json",
                            "-d", '{"chat_id": "123456789", "otp": "483920", "expire_seconds": 5}'],
                           capture_output=True, text=True, timeout=20)
        import json
        body = json.loads(p.stdout)
        assert body["success"] is True, p.stdout
        [msg] = bot.messages("123456789")
        assert "483920" in msg["text"]
        gone = wait_until(lambda: bot.messages("123456789")[0]["deleted_at"], 10 * SLOW,
                          "the sandbox deletion")
        assert gone >= parse_iso(body["delete_at"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    wait_until(lambda: not processes_with_marker(marker), 10 * SLOW, "every started process to exit")


def entrypoint_env(workdir, bot, port):
    """The environment the Dockerfile sets, pointed at this build and a scratch directory."""
    return {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(port),
            "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": bot.url,
            "OTP_FCGI_BIN": str(BUILD / "otp-fcgi"), "OTP_DELETER_BIN": str(BUILD / "otp-deleter"),
            "OTP_LIGHTTPD_CONF": str(ROOT / "lighttpd.conf"), "OTP_WWW_DIR": str(ROOT / "www"),
            "OTP_RUN_DIR": f"{workdir}/run"}


def start_entrypoint(workdir, env):
    """Starts conf/docker-entrypoint.sh; returns the process, its log file and a client."""
    log = open(Path(workdir) / "entrypoint.log", "wb")
    proc = subprocess.Popen([str(ROOT / "conf/docker-entrypoint.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    gw = Gateway.__new__(Gateway)  # a client only: the entrypoint owns the processes
    gw.port = int(env["PORT"])
    return proc, log, gw


def test_docker_entrypoint_runs_the_stack_and_stops_on_sigterm(workdir, bot):
    """The Dockerfile's entrypoint and health check, run here as the image would run them."""
    port = free_port()
    marker = "OTP_TEST_MARKER=" + uuid.uuid4().hex
    env = entrypoint_env(workdir, bot, port)
    env[marker.split("=")[0]] = marker.split("=")[1]
    proc, log, gw = start_entrypoint(workdir, env)
    try:
        wait_until(gw.healthy, 15 * SLOW, "the entrypoint's stack")
        sent = gw.send_otp({"chat_id": "61", "otp": "1234", "expire_seconds": 5})
        assert sent.status == 200
        assert Path(f"{workdir}/run/pending.db").exists(), "the database defaults into OTP_RUN_DIR"
        dockerfile = (ROOT / "Dockerfile").read_text()
        check = re.search(r'HEALTHCHECK .*CMD \["bash", "-c", "(.*)"\]', dockerfile).group(1)
        check = check.encode().decode("unicode_escape")
        p = subprocess.run(["bash", "-c", check], env={"PORT": str(port)}, timeout=10)
        assert p.returncode == 0, "the image's health check fails against a healthy stack"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.close()
    # the stop waited for the pending code's delete_at and deleted it
    [msg] = bot.messages("61")
    assert msg["deleted_at"] is not None and msg["deleted_at"] >= parse_iso(sent.json["delete_at"])
    wait_until(lambda: not processes_with_marker(marker), 10 * SLOW, "every started process to exit")


def test_dockerfile_copies_files_that_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):
        if src != ".":
            assert (ROOT / src).exists(), src


def test_shipped_env_example_is_a_valid_configuration(workdir):
    env = {"PATH": os.environ["PATH"], "OTP_ENV_FILE": str(ROOT / "conf/.env.example"),
           "OTP_DB_PATH": f"{workdir}/db"}
    p = run_program("otp-fcgi", env, "--check-config")
    assert p.returncode == 0, p.stderr
    assert "live mode" in p.stdout


def test_sigterm_lets_a_send_under_way_finish_and_be_deleted(workdir, bot):
    """Stopping the stack never leaves a delivered code behind: the send under way is answered
    and recorded, and the deleter's drain deletes it at its delete_at before the stack exits."""
    import sqlite3
    import threading
    port = free_port()
    proc, log, gw = start_entrypoint(workdir, entrypoint_env(workdir, bot, port))
    try:
        wait_until(gw.healthy, 15 * SLOW, "the stack")
        bot.config(method_latency_ms={"sendMessage": 1500})
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=gw.send_otp({"chat_id": "62", "otp": "1234", "expire_seconds": 5})))
        t.start()
        wait_until(lambda: bot.requests("sendMessage"), 5 * SLOW, "the send to reach Telegram")
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result["r"].status == 200, result["r"]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    con = sqlite3.connect(f"{workdir}/run/pending.db")
    rows = con.execute("SELECT chat_id, message_id FROM pending_deletions").fetchall()
    con.close()
    assert rows == [], "the delivered code was recorded, then deleted"
    [msg] = bot.messages("62")
    assert msg["message_id"] == result["r"].json["message_id"]
    assert msg["deleted_at"] is not None
    assert msg["deleted_at"] >= parse_iso(result["r"].json["delete_at"])
