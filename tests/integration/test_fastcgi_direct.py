"""otp-fcgi without lighttpd: started by spawn-fcgi (as behind nginx or Apache), spoken to with
cgi-fcgi, so that a request lighttpd would never pass (a body shorter than CONTENT_LENGTH) can
be sent."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, SLOW, TOKEN, wait_until


@pytest.fixture
def responder(workdir, bot):
    sock = Path(workdir) / "otp-fcgi.sock"
    pidfile = Path(workdir) / "otp-fcgi.pid"
    env = {"PATH": os.environ["PATH"], "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_API_BASE": bot.url, "OTP_DB_PATH": f"{workdir}/pending.db"}
    subprocess.run(["spawn-fcgi", "-s", str(sock), "-M", "0600", "-P", str(pidfile), "--",
                    str(BUILD / "otp-fcgi")], env=env, check=True, capture_output=True)
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5 * SLOW, "the pid file"))
    yield sock
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or
               "zombie" in Path(f"/proc/{pid}/status").read_text(), 10, "otp-fcgi to exit")


def fastcgi(sock, method, uri, body=b"", **params):
    env = {"PATH": os.environ["PATH"], "REQUEST_METHOD": method, "REQUEST_URI": uri,
           "SCRIPT_NAME": uri, "REMOTE_ADDR": "127.0.0.1", **params}
    p = subprocess.run(["cgi-fcgi", "-bind", "-connect", str(sock)], input=body, env=env,
                       capture_output=True, timeout=20)
    head, _, payload = p.stdout.partition(b"\r\n\r\n")
    return head.decode(), payload.decode()


def test_spawn_fcgi_started_responder_answers(responder):
    head, body = fastcgi(responder, "GET", "/")
    assert head.startswith("Status: 200"), head
    assert '"service":"OTP Social Gateway"' in body


def test_body_shorter_than_content_length_is_400(responder, bot):
    head, body = fastcgi(responder, "POST", "/send-otp", b'{"chat_id": "1"}',
                         CONTENT_TYPE="application/json", CONTENT_LENGTH="100")
    assert head.startswith("Status: 400"), head
    assert body == '{"detail":"Request body does not match Content-Length"}'
    assert bot.requests() == []


def test_nginx_style_empty_content_length_on_get_is_accepted(responder):
    head, _ = fastcgi(responder, "GET", "/health", CONTENT_TYPE="", CONTENT_LENGTH="")
    assert head.startswith("Status: 503"), "no deleter runs here: degraded, but answered"


def test_malformed_content_length_is_400(responder):
    head, _ = fastcgi(responder, "POST", "/send-otp", b"{}", CONTENT_TYPE="application/json",
                      CONTENT_LENGTH="12abc")
    assert head.startswith("Status: 400"), head
