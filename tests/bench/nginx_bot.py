"""A fake Bot API fast enough for benchmarks: nginx with Debian's echo module.

The Python emulator (tests/fakebot) is the reference for correctness tests; it does not keep up
with 1,000 calls/s at 300 ms latency. nginx answers from one worker, each call after
`latency_ms` (echo_sleep, a timer: thousands of calls wait at once), with the Bot API's JSON:

  sendMessage      {"ok":true,"result":{"message_id":N,"from":{...},"chat":{"id":C,...},"date":T,"text":"..."}}
  deleteMessage    {"ok":true,"result":true}      deleteMessages  the same
  getMe            {"ok":true,"result":{"id":...,"is_bot":true,...}}
  anything else    404 {"ok":false,"error_code":404,"description":"Not Found"}

message_id is 1, the millisecond of the answer within an 11.6-day cycle (9 digits), the
connection number's last three digits and the connection's request count's last digit: 14 digits
(under 2^53, which the gateway requires), increasing within the cycle, and unique unless one
connection is answered ten times within a millisecond. C is the request's chat_id (JSON or form).

Every call is logged to calls.log: the time it was answered, how long it took, the status, the
method, the message_id answered, the connection and the request body (JSON-escaped). calls() reads them back: that is when Telegram would
have seen each call, which is what the benchmark measures sends and deletion lag against.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
PACKAGES = "nginx-light libnginx-mod-http-echo"


def missing():
    """Why the fake cannot run here, or None."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return f"nginx is not installed (Debian packages: {PACKAGES})"
    if not Path(ECHO_MODULE).exists():
        return "nginx's echo module is not installed (Debian package libnginx-mod-http-echo)"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = r"""
load_module %(module)s;
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
%(user)s
events { worker_connections 16000; multi_accept on; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server_tokens off;

    map $msec $ms    { "~^\d*(?<s>\d{6})\.(?<f>\d+)$" "1$s$f"; }
    map $msec $epoch { "~^(?<s>\d+)\." "$s"; }
    map $connection $conn3 { "~(?<d>\d\d\d)$" "$d"; "~^(?<d>\d\d)$" "0$d"; default "00$connection"; }
    map $connection_requests $req1 { "~(?<d>\d)$" "$d"; }
    map $ms $msgid { default "$ms$conn3$req1"; }
    map $request_body $chat {
        "~\"chat_id\"\s*:\s*\"?(?<c>-?\d+)" "$c";
        "~(^|&)chat_id=(?<c>-?\d+)" "$c";
        default "0";
    }
    log_format calls escape=json '$msec $request_time $status $bench_method $bench_id $connection $request_body';

    server {
        listen 127.0.0.1:%(port)d backlog=4096%(tls)s;
        default_type application/json;
        set $bench_method "-";
        set $bench_id "-";
        access_log %(dir)s/calls.log calls buffer=256k flush=200ms;

        location ~ ^/bot[^/]+/sendMessage$ {
            set $bench_method sendMessage;
            set $bench_id $msgid;
            echo_read_request_body;
            %(sleep)s
            echo '{"ok":true,"result":{"message_id":$msgid,"from":{"id":123456789,"is_bot":true,"first_name":"Bench","username":"bench_bot"},"chat":{"id":$chat,"first_name":"Bench","type":"private"},"date":$epoch,"text":"(not echoed)"}}';
        }
        location ~ ^/bot[^/]+/deleteMessages?$ {
            set $bench_method $uri;
            echo_read_request_body;
            %(sleep)s
            echo '{"ok":true,"result":true}';
        }
        location ~ ^/bot[^/]+/getMe$ {
            echo '{"ok":true,"result":{"id":123456789,"is_bot":true,"first_name":"Bench","username":"bench_bot","can_join_groups":true,"can_read_all_group_messages":false,"supports_inline_queries":false}}';
        }
        location / {
            echo_status 404;
            echo '{"ok":false,"error_code":404,"description":"Not Found"}';
        }
    }
}
"""


class NginxBot:
    """nginx answering as the Bot API on a free loopback port, in its own directory."""

    def __init__(self, workdir, latency_ms=0, tls=None):
        """tls: (certificate, key) to answer over HTTPS only, with session resumption by
        cache and by tickets, as Telegram's servers offer both."""
        self.dir = Path(tempfile.mkdtemp(dir=workdir, prefix="nginx-bot-"))
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        sleep = f"echo_sleep {latency_ms / 1000:.3f};" if latency_ms > 0 else ""
        tls_conf = (f" ssl;\n        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};\n"
                    "        ssl_session_cache shared:tls:10m;\n        ssl_session_tickets on"
                    if tls else "")
        conf = CONF % {"module": ECHO_MODULE, "dir": self.dir, "port": self.port, "sleep": sleep,
                       "user": "user root;" if os.geteuid() == 0 else "", "tls": tls_conf}
        (self.dir / "nginx.conf").write_text(conf)
        self.log = self.dir / "calls.log"
        self._read_at = 0
        self._calls = []
        out = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            ["nginx", "-e", str(self.dir / "error.log"), "-p", str(self.dir), "-c",
             str(self.dir / "nginx.conf")], stdout=out, stderr=out, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx (fake Bot API) exited at start:\n" + self.errors())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx (fake Bot API) does not listen:\n" + self.errors())
                time.sleep(0.02)

    def errors(self):
        return "".join(p.read_text(errors="replace")
                       for p in (self.dir / "error.log", self.dir / "stderr.log") if p.exists())

    def calls(self):
        """Every call logged so far: dicts with at (when the call arrived, epoch seconds), done
        (when it was answered), status, method, body (a dict: JSON or form fields), message_id
        (what a sendMessage answered), connection (nginx's serial number of the client's
        connection: over TLS, each began with a handshake). The log is
        flushed every 200 ms: poll, do not expect the last call at once."""
        with open(self.log, "rb") as f:
            f.seek(self._read_at)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._read_at += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            parts = line.split(" ", 6)
            if len(parts) < 6:
                continue
            done, took, status, method = float(parts[0]), float(parts[1]), int(parts[2]), parts[3]
            raw = json.loads('"' + parts[6] + '"') if len(parts) == 7 else ""
            try:
                body = json.loads(raw) if raw.startswith("{") else {
                    k: v[0] for k, v in parse_qs(raw).items()}
            except ValueError:
                body = {}
            self._calls.append({"at": done - took, "done": done, "status": status,
                                "method": method.rsplit("/", 1)[-1], "body": body,
                                "connection": int(parts[5]),
                                "message_id": int(parts[4]) if parts[4].isdigit() else None})
        return self._calls

    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the access log
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
