"""TLS in front of the Bot API emulator, as Telegram (or a TLS proxy before a self-hosted Bot
API server) would present it: a private CA and a server certificate made with openssl, and nginx
terminating TLS and passing each call to the emulator over kept-alive HTTP.

nginx logs one line per call with its connection's serial number and whether the TLS session
was resumed: handshakes() counts the connections clients opened, which is what connection reuse
is checked against. The log never holds the request's URI (it carries the token)."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SLOW, free_port, stop_process, wait_until

sys.path.insert(0, str(ROOT / "tests"))
from pki import make_ca, make_server_cert  # noqa: E402,F401  (the tests' CA)


def missing():
    """Why a TLS front cannot run here, or None."""
    for prog in ("nginx", "openssl"):
        if shutil.which(prog) is None and not Path(f"/usr/sbin/{prog}").exists():
            return f"{prog} is not installed"
    return None


CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    log_format calls '$connection $connection_requests $ssl_session_reused $status';
    access_log {dir}/access.log calls;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    upstream emulator {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_session_cache shared:tls:1m;
        ssl_session_tickets on;
        keepalive_requests 100000;
        keepalive_timeout 75s;
        location / {{
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


class TlsFront:
    """nginx with TLS on a free loopback port in front of http://127.0.0.1:upstream_port."""

    def __init__(self, workdir, upstream_port, cert):
        self.dir = Path(workdir) / "tls-front"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(CONF.format(dir=self.dir, user=user, upstream=upstream_port,
                                    port=self.port, crt=cert[0], key=cert[1]))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        wait_until(lambda: (self.dir / "nginx.pid").exists() or self.proc.poll() is not None,
                   10 * SLOW, "the TLS front's pid file")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def calls(self):
        """[(connection, request number on it, session resumed, status)], one per call."""
        log = self.dir / "access.log"
        if not log.exists():
            return []
        rows = []
        for line in log.read_text().splitlines():
            conn, n, reused, status = line.split()
            rows.append((int(conn), int(n), reused == "r", int(status)))
        return rows

    def handshakes(self):
        """TLS connections that carried at least one call (each began with a handshake)."""
        return len({c[0] for c in self.calls()})

    def stop(self):
        stop_process(self.proc, signal.SIGQUIT)
