"""otp-fcgi without lighttpd: started by spawn-fcgi (as behind nginx or Apache), spoken to with
cgi-fcgi, so that a request lighttpd would never pass (a body shorter than CONTENT_LENGTH) can
be sent."""
import os
import signal
import socket
import struct
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


def _record(rtype, content=b"", request_id=1):
    return struct.pack(">BBHHBx", 1, rtype, request_id, len(content), 0) + content


def _nv(name, value):
    def length(n):
        return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)
    name, value = name.encode(), value.encode()
    return length(len(name)) + length(len(value)) + name + value


def fastcgi_stream(sock, params, chunks, timeout=10):
    """A FastCGI request as a web server without CONTENT_LENGTH sends it (Apache's mod_proxy_fcgi
    with a chunked body): the body in several FCGI_STDIN records, then the empty one that ends
    the stream. cgi-fcgi cannot do this (it sends CONTENT_LENGTH bytes of stdin). Returns the
    CGI head and body; a responder that hangs raises socket.timeout."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(sock))
    try:
        s.sendall(_record(1, struct.pack(">HB5x", 1, 0)))  # BEGIN_REQUEST, responder, no keep-conn
        s.sendall(_record(4, b"".join(_nv(k, v) for k, v in params.items())) + _record(4))
        for chunk in chunks:
            for i in range(0, len(chunk), 65535):
                s.sendall(_record(5, chunk[i:i + 65535]))
        s.sendall(_record(5))
        out = b""
        while True:
            head = s.recv(8, socket.MSG_WAITALL)
            assert len(head) == 8, "the responder closed the connection before FCGI_END_REQUEST"
            _, rtype, _, clen, plen = struct.unpack(">BBHHBx", head)
            content = s.recv(clen + plen, socket.MSG_WAITALL)[:clen] if clen + plen else b""
            if rtype == 6:
                out += content
            elif rtype == 3:
                break
    finally:
        s.close()
    h, _, body = out.partition(b"\r\n\r\n")
    return h.decode(), body.decode()


def _post_params(**extra):
    return {"REQUEST_METHOD": "POST", "REQUEST_URI": "/send-otp", "SCRIPT_NAME": "/send-otp",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", **extra}


def test_body_without_content_length_is_read_to_its_end(responder, bot):
    # no deleter runs here, so a complete valid body gets as far as the heartbeat check (503):
    # it was read whole and parsed; a body cut at the first record would be a 422
    body = b'{"chat_id": "123", ' + b'"otp": "4839' + b'20", "expire_seconds": 30}'
    head, text = fastcgi_stream(responder, _post_params(), [body[:10], body[10:25], body[25:]])
    assert head.startswith("Status: 503"), (head, text)
    assert "deletion is not running" in text
    assert bot.requests() == []


def test_invalid_body_without_content_length_is_422(responder):
    head, text = fastcgi_stream(responder, _post_params(), [b'{"chat_id": "1", ', b'"otp": "12"}'])
    assert head.startswith("Status: 422"), (head, text)
    assert '"loc":["body","otp"]' in text


@pytest.mark.parametrize("size", [4097, 20000, 200000, 2000000])
def test_body_without_content_length_over_4_kib_is_413(responder, bot, size):
    head, text = fastcgi_stream(responder, _post_params(), [b"x" * 8192] * (size // 8192) +
                                [b"x" * (size % 8192)])
    assert head.startswith("Status: 413"), (head, text)
    assert text == '{"detail":"Request body larger than 4096 bytes"}'
    assert bot.requests() == []


def test_body_without_content_length_of_exactly_4_kib_is_not_413(responder):
    body = b'{"chat_id": "1", "otp": "123456", "x": "' + b"a" * 4000
    body += b" " * (4096 - len(body) - 2) + b'"}'
    assert len(body) == 4096
    head, text = fastcgi_stream(responder, _post_params(), [body])
    assert head.startswith("Status: 422"), (head, text)
    assert "extra_forbidden" in text


def test_get_without_content_length_is_answered(responder):
    head, text = fastcgi_stream(responder, {"REQUEST_METHOD": "GET", "REQUEST_URI": "/",
                                            "SCRIPT_NAME": "/", "REMOTE_ADDR": "127.0.0.1"}, [])
    assert head.startswith("Status: 200"), head
    assert '"service":"OTP Social Gateway"' in text
