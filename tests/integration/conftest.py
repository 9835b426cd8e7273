"""Integration harness: a real web server + otp-fcgi + otp-deleter against the Bot API emulator.

Every gateway runs in its own directory under /dev/shm (tmpfs, like production), on free
loopback ports, and is torn down with its processes and files after the test.

The front end (the web server and how otp-fcgi runs behind it) is started by conf/serve.sh
from the shipped config, as `make run SERVER=...` starts it: lighttpd (the default; the
environment's OTP_FRONTEND changes it for a whole run), nginx, apache, apache-fcgid. The
`frontend` fixture names it; test_frontends.py runs its black-box suite through every one.

OTP_TEST_STORE=redis runs every gateway against a real redis-server (started once for the
session on a unix socket and a loopback port, each gateway under a key prefix of its own)
instead of SQLite; tests that read the SQLite file directly are skipped then.
"""
import calendar
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
import pwd

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("OTP_BUILD_DIR", ROOT / "build")).resolve()
PYTHON = "/usr/bin/python3"
TOKEN_SECRET = "TESTtoken-SECRET_abcdefghijklmnopqrstuv"
TOKEN = "123456789:" + TOKEN_SECRET
# sanitizer builds run slower: deadlines are widened, never dropped. Every bound of a timing
# check is multiplied by SLOW; OTP_TEST_SLOW sets it (e.g. 2 on a loaded CI machine).
SLOW = float(os.environ.get("OTP_TEST_SLOW") or
             (3.0 if ("asan" in str(BUILD) or "tsan" in str(BUILD)) else 1.0))

# conf/serve.sh's front ends, and the programs each needs
FRONTENDS = {"lighttpd": ["lighttpd"], "nginx": ["nginx", "spawn-fcgi"],
             "apache": ["apache2", "spawn-fcgi"], "apache-fcgid": ["apache2"]}
DEFAULT_FRONTEND = os.environ.get("OTP_FRONTEND", "lighttpd")
assert DEFAULT_FRONTEND in FRONTENDS, f"OTP_FRONTEND={DEFAULT_FRONTEND}: one of {list(FRONTENDS)}"
# started as root, Apache runs mod_fcgid's otp-fcgi processes as this user
WEB_USER = "www-data"


def frontend_missing(frontend):
    """Why this front end cannot run here (a program is missing), or None."""
    missing = [p for p in FRONTENDS[frontend] if not shutil.which(p, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if frontend == "apache-fcgid" and not Path("/usr/lib/apache2/modules/mod_fcgid.so").exists():
        missing.append("mod_fcgid (libapache2-mod-fcgid)")
    return f"{frontend}: not installed: {', '.join(missing)}" if missing else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.02):
    """Polls predicate until it returns a true value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<Response {self.status} {self.text[:300]}>"


class FakeBot:
    """The Bot API emulator (tests/fakebot/fakebot.py) as a subprocess."""

    def __init__(self, workdir, latency_ms=0):
        port_file = Path(workdir) / "fakebot.port"
        self.log = open(Path(workdir) / "fakebot.log", "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "tests/fakebot/fakebot.py"), "--port", "0",
             "--port-file", str(port_file), "--latency-ms", str(latency_ms)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: port_file.exists() or self.proc.poll() is not None, 10 * SLOW,
                   "the emulator's port file")
        assert self.proc.poll() is None, "the emulator exited at start"
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, payload=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps(payload).encode() if payload is not None else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        conn.close()
        return data

    def config(self, **settings):
        assert self._call("POST", "/_control/config", settings)["ok"]

    def messages(self, chat_id=None):
        q = f"?chat_id={chat_id}" if chat_id is not None else ""
        return self._call("GET", "/_control/messages" + q)["messages"]

    def requests(self, method=None):
        q = f"?method={method}" if method else ""
        return self._call("GET", "/_control/requests" + q)["requests"]

    def backdate(self, chat_id, message_id, seconds):
        self._call("POST", "/_control/backdate",
                   {"chat_id": str(chat_id), "message_id": message_id, "seconds": seconds})

    def bot_call(self, method, params):
        return self._call("POST", f"/bot{TOKEN}/{method}", params)

    def stop(self):
        stop_process(self.proc)
        self.log.close()


class RedisServer:
    """A real redis-server for the tests: loopback TCP on a free port and a unix socket, in its
    own directory; nothing is saved unless appendonly is asked for."""

    def __init__(self, workdir, appendonly=False):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.dir / "redis.sock")
        self.port = free_port()
        self.appendonly = appendonly
        self.proc = None
        self.start()

    def start(self):
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--unixsocket", self.sock, "--unixsocketperm", "700", "--dir", str(self.dir),
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--appendfsync", "always", "--maxmemory-policy", "noeviction"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_until(lambda: self.ping() or self.proc.poll() is not None, 10, "redis-server")
        assert self.proc.poll() is None, (self.dir / "redis.log").read_text()

    def stop(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except (OSError, subprocess.SubprocessError):
            return False

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.sock, *map(str, args)],
                             capture_output=True, timeout=10, check=True)
        return out.stdout.decode().strip()

    def url(self, prefix, unix=True):
        base = f"redis+unix://{self.sock}" if unix else f"redis://127.0.0.1:{self.port}/0"
        return f"{base}?prefix={prefix}"


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for every test of the session that wants one (gateways use distinct
    key prefixes)."""
    d = tempfile.mkdtemp(prefix="otp-redis-", dir="/dev/shm")
    server = RedisServer(d)
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


STORE = os.environ.get("OTP_TEST_STORE", "sqlite")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: the test edits the SQLite file itself, or "
                            "checks what only one SQLite file does (the deleter's lock)")
    config.addinivalue_line("markers", "serial: the test cannot share the machine with others "
                            "(it measures time closely, or builds and runs containers): "
                            "tests/run-tests.sh runs it alone, after the parallel passes")


def pytest_collection_modifyitems(config, items):
    """The Redis pass reruns only the tests whose store it changes: those that start gateways
    through make_gateway. The others would run the same programs the same way twice."""
    if STORE != "redis":
        return
    skip = pytest.mark.skip(reason="SQLite only (OTP_TEST_STORE=redis)")
    keep, drop = [], []
    for item in items:
        (keep if "make_gateway" in getattr(item, "fixturenames", ()) else drop).append(item)
        if "sqlite_only" in item.keywords:
            item.add_marker(skip)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class Gateway:
    """A front end (conf/serve.sh FRONTEND: the web server and otp-fcgi) and otp-deleter with
    one database. `layout` names where the programs and configs are: the source tree (default),
    or an installed tree ({"bin": ..., "share": ...})."""

    def __init__(self, workdir, bot, env=None, frontend=None, layout=None):
        self.dir = Path(workdir)
        self.bot = bot
        self.frontend = frontend or DEFAULT_FRONTEND
        layout = layout or {}
        self.bin = Path(layout.get("bin", BUILD))
        self.serve = Path(layout.get("share", ROOT)) / "conf/serve.sh"
        self.port = free_port()
        self.db_path = str(self.dir / "pending.db")
        (self.dir / "run").mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "OTP_FCGI_BIN": str(self.bin / "otp-fcgi"),
            "OTP_RUN_DIR": str(self.dir / "run"),
            "OTP_WWW_DIR": str(Path(layout.get("share", ROOT)) / "www"),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": bot.url,
            "TELEGRAM_TIMEOUT_SECONDS": "2",
            "OTP_DB_PATH": self.db_path,
            "LOG_LEVEL": "DEBUG",
            "RATE_LIMIT_PER_IP": "1000",
            "RATE_LIMIT_PER_USER": "1000",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            # a stop drains the pending deletions (up to MAX_EXPIRE_SECONDS): the teardown
            # does not wait for them; test_stop_drain.py sets it (None: the default)
            "DELETER_STOP_TIMEOUT_SECONDS": "0",
        }
        self.env.update(env or {})
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.redis = self.redis_prefix = None  # set by make_gateway for a Redis store
        self.lighttpd = None  # the front end's process (conf/serve.sh), whichever it is
        self.deleter = None
        self.logs = {}
        # mod_fcgid's otp-fcgi runs as Apache's user when we are root: it and otp-deleter
        # share the database, so the deleter runs as that user too, in a directory of its own
        self.as_user = []
        if self.frontend == "apache-fcgid" and os.geteuid() == 0:
            user = pwd.getpwnam(WEB_USER)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                            "--clear-groups"]
        if os.geteuid() == 0:
            # the web server's workers reach the sockets (and mod_fcgid the database)
            for d in (self.dir, *self.dir.parents):
                if str(d) in ("/", "/dev/shm", "/tmp"):
                    break
                os.chmod(d, os.stat(d).st_mode | 0o111)

    def start(self, deleter=True):
        self.start_lighttpd()
        if deleter:
            self.start_deleter()
            wait_until(self.healthy, 10 * SLOW, "a healthy gateway")

    def _spawn(self, name, argv):
        log = open(self.dir / f"{name}.log", "ab")
        self.logs[name] = self.dir / f"{name}.log"
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        return proc

    def start_lighttpd(self):
        """Starts the front end (the name is older than the other front ends)."""
        reason = frontend_missing(self.frontend)
        if reason:
            pytest.skip(reason)
        def up():
            if self.lighttpd.poll() is not None:
                return "exited"
            try:
                return self.get("/").status == 200
            except OSError:
                return False
        log = self.dir / f"{self.frontend}.log"
        for _ in range(5):
            seen = log.stat().st_size if log.exists() else 0
            self.lighttpd = self._spawn(self.frontend, [str(self.serve), self.frontend])
            if wait_until(up, 10 * SLOW, f"{self.frontend} to answer") is True:
                return
            # free_port() found the port free, not kept: with tests side by side another
            # stack may bind it first; then this one takes another port
            with open(log, "rb") as f:
                f.seek(seen)
                if b"Address already in use" not in f.read():
                    break
            self.port = free_port()
            self.env["PORT"] = str(self.port)
        raise AssertionError(f"{self.frontend} exited at start:\n{self.log_text()}")

    start_frontend = start_lighttpd

    def start_deleter(self, *args):
        self.deleter = self._spawn("deleter", [*self.as_user, str(self.bin / "otp-deleter"), *args])

    def stop_deleter(self, sig=signal.SIGTERM):
        stop_process(self.deleter, sig)

    def request(self, method, path, body=None, headers=None, source=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        result = Response(resp.status, resp.headers, resp.read())
        conn.close()
        return result

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def healthy(self):
        """True when /health answers 200; False while nothing listens yet."""
        try:
            return self.get("/health").status == 200
        except OSError:
            return False

    def send_otp(self, payload, source=None, content_type="application/json"):
        return self.request("POST", "/send-otp", body=payload,
                            headers={"Content-Type": content_type}, source=source)

    def send_pids(self):
        """The pids of the otp-fcgi processes that answered POST /send-otp (from their logs)."""
        return {line["pid"] for line in self.log_lines()
                if line.get("message") == "request" and line.get("path") == "/send-otp"}

    def db_rows(self, sql="SELECT chat_id, message_id, delete_at_ms, attempts FROM pending_deletions"):
        if self.redis is not None:
            return self.redis_rows(sql)
        con = sqlite3.connect(self.db_path, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def db_execute_many(self, sql, rows):
        """Writes rows into the SQLite database as an operator's sqlite3 shell would."""
        assert self.redis is None, "a SQLite-only helper"
        con = sqlite3.connect(self.db_path, timeout=10)
        try:
            with con:
                con.executemany(sql, rows)
        finally:
            con.close()

    def redis_rows(self, sql):
        """The answers of the SQL queries tests ask, read from Redis the way README's redis-cli
        commands do; a query without a Redis reading skips the test."""
        r, p = self.redis, self.redis_prefix
        default = "SELECT chat_id, message_id, delete_at_ms, attempts FROM pending_deletions"
        if sql in (default, "SELECT count(*) FROM pending_deletions"):
            ids = r.cli("ZRANGE", p + "pending:due", 0, -1).split()
            if sql != default:
                return [(len(ids),)]
            rows = []
            for i in ids:
                h = dict(zip(*[iter(r.cli("HGETALL", f"{p}pending:{i}").split("\n"))] * 2))
                if "chat_id" not in h:
                    continue  # removed since ZRANGE read it
                rows.append((h["chat_id"], int(h["message_id"]), int(h["delete_at_ms"]),
                             int(h["attempts"])))
            return rows
        m = re.fullmatch(r"SELECT count\(\*\) FROM rate_events(?: WHERE scope (?:= '(\w+)'|"
                         r"IN \('chat', 'ip'\)))?", sql)
        if m:
            keys = [k for k in r.cli("--scan", "--pattern", p + "rate:*").split()
                    if k != p + "rate:seq" and (m.group(1) is None or
                                                 k.startswith(f"{p}rate:{m.group(1)}:"))]
            return [(sum(int(r.cli("LLEN", k)) for k in keys),)]
        m = re.fullmatch(r"SELECT until_ms FROM telegram_pauses WHERE kind = '(\w+)'", sql)
        if m:
            v = r.cli("HGET", f"{p}pause:{m.group(1)}", "until_ms")
            return [(int(v),)] if v else []
        pytest.skip("reads the SQLite file directly: " + sql)

    def log_text(self):
        return "".join(p.read_text(errors="replace") for p in self.logs.values() if p.exists())

    def log_lines(self):
        """Every JSON log line of every program (lighttpd's own lines are not JSON)."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def children_left(self):
        """otp-fcgi processes of this gateway still alive (lighttpd puts each child in a
        process group of its own, so they are found by the run directory in their environment;
        mod_fcgid's get no environment but the env file under it)."""
        markers = (f"OTP_RUN_DIR={self.dir / 'run'}".encode(),
                   f"OTP_ENV_FILE={self.dir / 'run'}/otp-gateway.env".encode())
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]:
                    continue  # a zombie waits for its reaper, it runs nothing
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if any(m in environ for m in markers):
                    found.append(int(pid))
            except OSError:
                pass
        return found

    def stop(self):
        stop_process(self.lighttpd)
        stop_process(self.deleter)
        try:
            wait_until(lambda: not self.children_left(), 10 * SLOW,
                   f"otp-fcgi to exit with {self.frontend}")
        finally:
            for pid in self.children_left():
                os.kill(pid, signal.SIGKILL)
        text = self.log_text()
        for marker in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:",
                       "unknown config-key"):
            assert marker not in text, f"{marker!r} in the logs:\n{text[-4000:]}"


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="otp-test-", dir="/dev/shm")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bot(workdir):
    b = FakeBot(workdir)
    yield b
    b.stop()


def make_install(destdir, prefix="/usr/local"):
    """`make install` of this build into destdir; returns the Gateway layout of the tree."""
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", "deps", "-o", str(BUILD / "otp-fcgi"),
                        "-o", str(BUILD / "otp-deleter"), f"BUILD={BUILD}", f"PREFIX={prefix}",
                        f"DESTDIR={destdir}", "install"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    tree = Path(f"{destdir}{prefix}")
    return {"bin": str(tree / "bin"), "share": str(tree / "share/otp-gateway"), "prefix": str(tree)}


@pytest.fixture(scope="session")
def installed_tree():
    """This build installed with `make install DESTDIR=...` (PREFIX /usr/local), once a run."""
    d = tempfile.mkdtemp(prefix="otp-destdir-", dir="/dev/shm")
    os.chmod(d, 0o755)
    try:
        yield make_install(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def container_image():
    """The Docker image built with podman from the Dockerfile (tests/integration/container.py)."""
    import container
    if SLOW > 1:
        pytest.skip("the image has a build of its own, not this sanitizer build: make test runs it")
    reason = container.unavailable()
    if reason:
        pytest.skip(reason)
    return container.build_image()


@pytest.fixture(scope="session")
def container_gateway_factory(container_image):
    """container_gateway_factory(workdir, bot, env) -> a ContainerGateway, not yet started."""
    import container
    return lambda workdir, bot, env=None, **kw: container.ContainerGateway(workdir, bot, env, container_image, **kw)


@pytest.fixture(scope="session")
def kube_gateway_factory(container_image):
    """kube_gateway_factory(workdir, bot, env) -> a KubeGateway (conf/kubernetes/ under podman
    kube play), not yet started."""
    import container
    reason = container.kube_unavailable()
    if reason:
        pytest.skip(reason)
    return lambda workdir, bot, env=None: container.KubeGateway(workdir, bot, env, container_image)


@pytest.fixture
def frontend():
    """The front end make_gateway starts (a module may override this fixture with params)."""
    return DEFAULT_FRONTEND


@pytest.fixture
def make_gateway(workdir, bot, frontend, request):
    """make_gateway(env={...}, deleter=True) starts a gateway; all are stopped afterwards."""
    started = []

    def make(env=None, deleter=True, frontend=frontend, layout=None):
        sub = Path(workdir) / f"gw{len(started)}"
        sub.mkdir()
        server = prefix = None
        if STORE == "redis" and "OTP_STORE" in (env or {}):
            pytest.skip("brings a store of its own: the SQLite pass runs it")
        if STORE == "redis":
            server = request.getfixturevalue("redis_server")
            prefix = f"{sub.parent.name}-{sub.name}:"
            env = {"OTP_STORE": server.url(prefix, unix=False), **(env or {})}
        gw = Gateway(sub, bot, env, frontend, layout)
        gw.redis, gw.redis_prefix = server, prefix
        started.append(gw)  # before start(): a failed start is cleaned up too
        gw.start(deleter)
        return gw
    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(make_gateway):
    return make_gateway()


ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def parse_iso(s):
    assert ISO.match(s), s
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
