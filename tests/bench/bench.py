#!/usr/bin/python3
"""make bench — figures, not tests: otp-gateway beside the original FastAPI service, on the same
fake Bot API (nginx, tests/bench/nginx_bot.py) and the same load.

Scenarios (every request for a distinct chat):
 1. Zero Bot API latency, closed loop (wrk, c=1 and c=64), the limits raised out of the way as
    a backend caller would raise them (RATE_LIMIT_PER_IP=1000000,
    TELEGRAM_MAX_SENDS_PER_SECOND=10000; the original: OTP_PER_IP_LIMIT=1000000000/minute);
    ours again on a Redis store (OTP_STORE=redis+unix://..., when redis-server is installed),
    on a primary with a replica found through Sentinel that holds every pending row before
    its 200 (redis+sentinel://, OTP_REDIS_MIN_REPLICAS=1: WAIT 1; when redis-sentinel is
    installed) and with RATE_LIMIT_PER_IP=0. Then what the per-address limit costs per request: pairs
    of wrk runs at c=64, RATE_LIMIT_PER_IP=1000000 then 0 on a fresh stack each, alternating,
    each giving the stack's CPU time (user + system of lighttpd, every otp-fcgi and otp-deleter,
    from /proc/PID/stat) per 200 answer, which other load on the machine disturbs far less than
    req/s; the median of the pairs' ratios.
 2. 300 ms Bot API latency, TELEGRAM_PAID_BROADCAST=1, open loop at 1,000 sends/s
    (tests/bench/openloop.py), expire_seconds 5: answers, p50/p99 counted from when each
    request was due, sends and deletions seen by the fake, deletion lag, the stack's peak RSS
    and PSS.
 3. The default configuration (30 sends/s) at 300 ms latency, open loop at 30 sends/s.
 4. The Bot API over TLS, as Telegram speaks it (the fake behind HTTPS with a private CA,
    TELEGRAM_CA_FILE; session resumption by cache and tickets): zero latency at c=64 and the
    paid broadcast of scenario 2, each beside the same run over plain HTTP, with the stack's
    CPU time per send (user + system / sends) and the TLS connections the fake saw; the
    original's CPU per send at zero latency over plain HTTP beside them.
 5. Revoke with 100,000 rows pending: the time of POST /revoke-otp's store step (the claim,
    one write transaction that every other writer waits for), store_pending_claim() as otp-fcgi
    calls it (tests/bench/revoke_claim.c), for 1,000 rows picked across the table, on SQLite
    (tmpfs) and on Redis when redis-server is installed: median, p99 and max. Target: median
    <= 1 ms.

Deletion lag is measured at the fake Bot API, as Telegram would see it: when the deletion call
arrived, minus (when the send was answered + expire_seconds).

Environment:
  BENCH_QUICK=1      short runs (wrk 3 s, open loops 15 s): about 5 minutes in all (full: 8-10)
  BENCH_SMOKE=1      tiny runs, only to show the harness works (the test suite runs it)
  BENCH_WRK_SECONDS, BENCH_OPEN_SECONDS   override the durations (10 and 60 s in a full run)
  BENCH_COST_PAIRS, BENCH_COST_SECONDS     scenario 1's cost of the per-address limit: pairs of
                     wrk runs (5; quick 3; smoke 1) and their length (5 s; quick 3 s; smoke 1 s)
  BENCH_BROADCAST_RATE   scenario 2's rate (default 1000 sends/s)
  BENCH_ONLY=zero,broadcast,default,tls,revoke   run only these scenarios (cost: only
                     scenario 1's cost of the per-address limit; sqlite64, never run unless
                     named: only its c=64 SQLite row, BENCH_SQLITE64_RUNS runs (3) on fresh
                     stacks, each with the stack's CPU per answer)
  BENCH_REVOKE_ROWS, BENCH_REVOKE_CLAIMS   scenario 5's rows pending (100,000; smoke 2,000) and
                     claims timed (1,000; smoke 100)
  ORIGINAL_DIR       the original's directory (with run.sh; default ../shared/original beside the
                     project); empty or "none" leaves the original out
  ORIGINAL_WORKERS   uvicorn workers for the original in scenarios 2 and 3 (default 2)
  BENCH_FRONTEND     our front end, as conf/serve.sh names it (default lighttpd)
"""
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import nginx_bot  # noqa: E402
import openloop  # noqa: E402
import pki  # noqa: E402

ROOT = HERE.parents[1]
BUILD = Path(os.environ.get("OTP_BUILD_DIR", ROOT / "build")).resolve()
PYTHON = "/usr/bin/python3"
TOKEN = "123456789:BENCHtoken-abcdefghijklmnopqrstuvwxyz0"
SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0")
QUICK = SMOKE or os.environ.get("BENCH_QUICK", "") not in ("", "0")
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", 1 if SMOKE else 3 if QUICK else 10))
OPEN_SECONDS = int(os.environ.get("BENCH_OPEN_SECONDS", 1 if SMOKE else 15 if QUICK else 60))
BROADCAST_RATE = int(os.environ.get("BENCH_BROADCAST_RATE", 100 if SMOKE else 1000))
CLIENT_TIMEOUT = 10  # seconds an open-loop client waits for its answer, as a caller would
FRONTEND = os.environ.get("BENCH_FRONTEND", "lighttpd")  # conf/serve.sh's: lighttpd, nginx, ...
ONLY = set(filter(None, os.environ.get("BENCH_ONLY",
                                       "zero,broadcast,default,tls,revoke").split(",")))
REVOKE_ROWS = int(os.environ.get("BENCH_REVOKE_ROWS", 2000 if SMOKE else 100_000))
REVOKE_CLAIMS = int(os.environ.get("BENCH_REVOKE_CLAIMS", 100 if SMOKE else 1000))
EXPIRE = 5
LATENCY_MS = 300
# after the load, wait for the deletions: at most expire_seconds plus this, and never more than
# this without a new deletion (a stack that falls behind is not waited for: its figures say so)
DRAIN_SECONDS = 8 if SMOKE else 15 if QUICK else 30
COST_PAIRS = int(os.environ.get("BENCH_COST_PAIRS", 1 if SMOKE else 3 if QUICK else 5))
COST_SECONDS = int(os.environ.get("BENCH_COST_SECONDS", 1 if SMOKE else 3 if QUICK else 5))
SQLITE64_RUNS = int(os.environ.get("BENCH_SQLITE64_RUNS", 1 if SMOKE else 3))
CLK_TCK = os.sysconf("SC_CLK_TCK")
RAISED = {"RATE_LIMIT_PER_IP": "1000000", "TELEGRAM_MAX_SENDS_PER_SECOND": "10000"}
ORIGINAL_RAISED = {"OTP_PER_IP_LIMIT": "1000000000/minute"}
ORIGINAL_MODULES = ("fastapi", "uvicorn", "httpx", "pydantic", "prometheus_client", "dotenv")
ORIGINAL_PACKAGES = ("python3-fastapi python3-uvicorn python3-httpx python3-pydantic "
                     "python3-prometheus-client python3-dotenv python3-uvloop python3-httptools "
                     "python3-limits")


def load():
    """The machine's load: other work on it skews every figure."""
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def proc_table():
    """pid -> parent pid, for every process."""
    table = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            table[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return table


def with_descendants(roots):
    table = proc_table()
    found, todo = set(), [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(c for c, parent in table.items() if parent == pid)
    return found


def comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def mem_kib(pid, path="status", field="VmRSS:"):
    try:
        for line in open(f"/proc/{pid}/{path}"):
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return mem_kib(pid)


def pss_kib(pid):
    """RSS with each shared page divided among the processes that map it (libraries, SQLite's
    shared memory): what the stack really takes; a sum of RSS counts shared pages once per
    process."""
    return mem_kib(pid, "smaps_rollup", "Pss:")


class PeakRss:
    """Samples the summed RSS of a stack's processes (and their children) every 0.25 s."""

    def __init__(self, stack):
        self.stack, self.peak_kib, self.peak_pss_kib, self.nproc = stack, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:  # the shell scripts that start the stack are not part of it
                pids = [p for p in with_descendants(self.stack.root_pids())
                        if comm(p) not in ("bash", "sh")]
                total = sum(rss_kib(p) for p in pids)
                pss = sum(pss_kib(p) for p in pids)
            except OSError:  # e.g. out of file descriptors for a moment: skip this sample
                total = pss = 0
            if total > self.peak_kib:
                self.peak_kib, self.nproc = total, len(pids)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)
            self._stop.wait(0.25)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def http_ok(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_group(proc, sig=signal.SIGTERM, timeout=15):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Ours:
    """The front end (conf/serve.sh FRONTEND: lighttpd spawning otp-fcgi by default) and
    otp-deleter, as `make run` starts them, with the given settings on top of the defaults (no
    .env is read)."""

    def __init__(self, workdir, bot, settings, label):
        self.label = label
        self.dir = Path(workdir) / f"ours-{free_port()}"
        (self.dir / "run").mkdir(parents=True)
        self.port = free_port()
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "HOST": "127.0.0.1", "PORT": str(self.port),
                    "OTP_FCGI_BIN": str(BUILD / "otp-fcgi"), "OTP_RUN_DIR": str(self.dir / "run"),
                    "OTP_WWW_DIR": str(ROOT / "www"), "TELEGRAM_BOT_TOKEN": TOKEN,
                    "TELEGRAM_API_BASE": bot.url, "OTP_DB_PATH": str(self.dir / "pending.db"),
                    # the teardown does not wait for the codes still pending (a stop drains)
                    "DELETER_STOP_TIMEOUT_SECONDS": "0"}
        self.env.update(settings)
        self.procs = []
        try:
            serve = ROOT / "conf/serve.sh"
            if serve.exists():  # the front end as `make run` starts it
                self._spawn("frontend", [str(serve), FRONTEND])
            else:
                self._spawn("frontend", ["lighttpd", "-D", "-f", str(ROOT / "lighttpd.conf")])
            self._spawn("deleter", [str(BUILD / "otp-deleter")])
            wait_until(lambda: self._alive() and http_ok(self.port, "/health"), 30,
                       f"{label} to answer /health")
        except Exception:
            self.stop()
            raise

    def _spawn(self, name, argv):
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                               start_new_session=True))

    def _alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{self.label}: {p.args[0]} exited at start:\n{self.log_tail()}")
        return True

    def log_tail(self):
        return "".join(p.read_text(errors="replace")[-2000:] for p in self.dir.glob("*.log"))

    def root_pids(self):
        return [p.pid for p in self.procs if p.poll() is None]

    def _leftovers(self):
        """otp-fcgi processes of this stack still running (lighttpd gives each child a process
        group of its own: found by the run directory in their environment)."""
        marker = f"OTP_RUN_DIR={self.dir / 'run'}".encode()
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                if stat.split()[0] != "Z" and \
                        marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(int(pid))
            except OSError:
                pass
        return found

    def stop(self):
        for p in self.procs:
            stop_group(p)
        deadline = time.monotonic() + 10
        while self._leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self._leftovers():
            os.kill(pid, signal.SIGKILL)


class Original:
    """The original FastAPI service: ORIGINAL_DIR/run.sh PORT WORKERS (uvicorn)."""

    def __init__(self, workdir, bot, settings, label, directory, workers):
        self.label = label
        self.port = free_port()
        self.logfile = Path(workdir) / f"original-{self.port}.log"
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "HOME": str(workdir), "PYTHONDONTWRITEBYTECODE": "1",
               "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": bot.url + "/bot"}
        env.update(settings)
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen([str(Path(directory) / "run.sh"), str(self.port),
                                          str(workers)], env=env, cwd=workdir, stdout=log,
                                         stderr=log, start_new_session=True)
        try:
            def up():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{label} exited at start:\n{self.log_tail()}")
                return http_ok(self.port, "/health")
            wait_until(up, 60, f"{label} to answer /health")
        except Exception:
            self.stop()
            raise

    def log_tail(self):
        return self.logfile.read_text(errors="replace")[-2000:]

    def root_pids(self):
        return [self.proc.pid] if self.proc.poll() is None else []

    def stop(self):
        stop_group(self.proc)


def find_original():
    """(directory, None) or (None, why the original is left out)."""
    if "ORIGINAL_DIR" in os.environ:
        d = os.environ["ORIGINAL_DIR"]
        if d in ("", "none"):
            return None, "ORIGINAL_DIR is empty"
        candidates = [Path(d)]
    else:
        candidates = [ROOT.parent / "shared" / "original"]
        try:  # a git worktree: ../shared beside the main checkout
            common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute",
                                     "--git-common-dir"], capture_output=True, text=True)
            if common.returncode == 0:
                candidates.append(Path(common.stdout.strip()).parent.parent / "shared" / "original")
        except OSError:
            pass
    for d in candidates:
        if (d / "run.sh").exists():
            break
    else:
        return None, f"no run.sh in {' or '.join(str(c) for c in candidates)} (set ORIGINAL_DIR)"
    check = subprocess.run([PYTHON, "-c", "import " + ", ".join(ORIGINAL_MODULES)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        return None, (f"its Python packages are missing ({check.stderr.strip().splitlines()[-1]}); "
                      f"as root, tests/bench/install-deps installs them: {ORIGINAL_PACKAGES}")
    return d.resolve(), None


# --- scenario 1: zero latency, closed loop (wrk) ------------------------------------------

WRK_LUA = """
local counter = 0
function setup(thread)
  nthreads = (nthreads or 0) + 1
  thread:set("tid", nthreads)
end
function request()
  counter = counter + 1
  local body = '{"chat_id": "' .. (%d + tid * 10000000 + counter) .. '", "otp": "123456", "expire_seconds": 60}'
  return wrk.format("POST", "/send-otp", {["Content-Type"] = "application/json"}, body)
end
"""


def wrk_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text or "")
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]


def wrk(stack, conns, workdir, base, seconds=WRK_SECONDS):
    script = Path(workdir) / f"post-{base}.lua"
    script.write_text(WRK_LUA % base)
    p = subprocess.run(["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s", "--latency",
                        "-s", str(script), f"http://127.0.0.1:{stack.port}/"],
                       capture_output=True, text=True, timeout=seconds + 120)
    out = p.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if p.returncode != 0 or not total:
        raise RuntimeError(f"wrk failed ({p.returncode}): {out}{p.stderr}")
    secs = float(total.group(2)) * {"ms": 0.001, "s": 1, "m": 60}.get(total.group(3), 1)
    n = int(total.group(1))
    bad = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"ok_per_s": (n - bad) / secs, "answers": n, "non200": bad,
            "errors": sum(map(int, errors.groups())) if errors else 0,
            # the latency distribution's lines, not a "+/- Stdev" column such as 78.50%
            "p50": wrk_ms((re.search(r"^\s+50%\s+(\S+)$", out, re.M) or [0, ""])[1]),
            "p99": wrk_ms((re.search(r"^\s+99%\s+(\S+)$", out, re.M) or [0, ""])[1])}


def scenario_zero(workdir, original):
    print(f"\n1. Zero Bot API latency, wrk {WRK_SECONDS} s per run, distinct chats, limits raised "
          f"({load()})\n"
          "   (RATE_LIMIT_PER_IP=1000000, TELEGRAM_MAX_SENDS_PER_SECOND=10000; the original: "
          "OTP_PER_IP_LIMIT=1000000000/minute);\n   req/s counts 200 answers")
    systems = [("otp-gateway", lambda bot: Ours(workdir, bot, RAISED, "otp-gateway")),
               ("otp-gateway, RATE_LIMIT_PER_IP=0",
                lambda bot: Ours(workdir, bot, dict(RAISED, RATE_LIMIT_PER_IP="0"),
                                "otp-gateway, RATE_LIMIT_PER_IP=0"))]
    redis = RedisStore(workdir) if shutil.which("redis-server") else None
    if redis is not None:  # the same stack on the shared-store backend (issue: several hosts)
        systems.insert(1, ("otp-gateway, OTP_STORE=redis", lambda bot: Ours(
            workdir, bot, dict(RAISED, OTP_STORE=redis.url), "otp-gateway, OTP_STORE=redis")))
    sentinel = SentinelStore(workdir) if shutil.which("redis-sentinel") else None
    if sentinel is not None:  # a primary, a replica that must hold each row (WAIT 1), Sentinel
        label = "otp-gateway, Sentinel, WAIT 1"
        systems.insert(2, (label, lambda bot: Ours(
            workdir, bot, dict(RAISED, OTP_STORE=sentinel.url, OTP_REDIS_MIN_REPLICAS="1"),
            label)))
    if original:
        for w in (1, 2):
            label = f"original, {w} worker{'s' if w > 1 else ''}"
            systems.append((label, lambda bot, w=w, label=label: Original(
                workdir, bot, ORIGINAL_RAISED, label, original, w)))
    print(f"   {'system':<34}{'c=1 req/s':>10}{'c=1 p99':>10}{'c=64 req/s':>12}"
          f"{'c=64 p50':>10}{'c=64 p99':>10}  other answers / socket errors")
    bot = nginx_bot.NginxBot(workdir, 0)
    rows = {}
    try:
        for n, (label, make) in enumerate(systems):
            stack = make(bot)
            try:
                one = wrk(stack, 1, workdir, 100_000_000 + n * 1_000_000_000)
                many = wrk(stack, 64, workdir, 150_000_000 + n * 1_000_000_000)
            finally:
                stack.stop()
            rows[label] = (one, many)
            print(f"   {label:<34}{one['ok_per_s']:>10.0f}{fmt(one['p99'], '>8.1f', 'ms')}"
                  f"{many['ok_per_s']:>12.0f}{fmt(many['p50'], '>8.1f', 'ms')}"
                  f"{fmt(many['p99'], '>8.1f', 'ms')}  "
                  f"{one['non200'] + many['non200']} / {one['errors'] + many['errors']}",
                  flush=True)
    finally:
        bot.stop()
        if redis is not None:
            redis.stop()
        if sentinel is not None:
            sentinel.stop()
    ours, off = rows["otp-gateway"][1], rows["otp-gateway, RATE_LIMIT_PER_IP=0"][1]
    print(f"   cost per request (1 / req/s at c=64) with RATE_LIMIT_PER_IP=1000000 over 0: "
          f"{(off['ok_per_s'] / ours['ok_per_s'] - 1) * 100:+.0f} %")
    for label in ("original, 2 workers", "original, 1 worker"):
        if label in rows:
            theirs = rows[label]
            print(f"   otp-gateway / {label}: c=1 {ratio(rows['otp-gateway'][0], theirs[0])}, "
                  f"c=64 {ratio(ours, theirs[1])} (req/s)")
    per_ip_cost(workdir)


def cpu_seconds(pids):
    """User + system CPU time of these processes (all their threads, and children they reaped)."""
    ticks = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile: its parent's cutime/cstime has it once reaped
    return ticks / CLK_TCK


def cost_run(workdir, bot, per_ip, base):
    """One wrk run at c=64 on a fresh stack: (CPU µs of the stack per 200 answer, 200s per s)."""
    label = f"otp-gateway, RATE_LIMIT_PER_IP={per_ip}"
    stack = Ours(workdir, bot, dict(RAISED, RATE_LIMIT_PER_IP=per_ip), label)
    try:
        pids = with_descendants(stack.root_pids())
        before = cpu_seconds(pids)
        res = wrk(stack, 64, workdir, base, COST_SECONDS)
        pids |= with_descendants(stack.root_pids())  # a worker respawned meanwhile
        used = cpu_seconds(pids) - before
    finally:
        stack.stop()
    ok = res["answers"] - res["non200"]
    return (used * 1e6 / ok if ok else float("nan")), res["ok_per_s"]


def per_ip_cost(workdir):
    """What RATE_LIMIT_PER_IP=1000000 costs over 0 per request, in pairs of runs alternating the
    two (the machine's other load drifts between runs: each pair sees about the same)."""
    print(f"\n   Cost of the per-address limit: {COST_PAIRS} pair(s) of wrk runs, c=64, "
          f"{COST_SECONDS} s each, a fresh stack each, RATE_LIMIT_PER_IP=1000000 then 0\n"
          "   (CPU = user + system time of lighttpd, otp-fcgi and otp-deleter during the run, "
          f"per 200 answer; {load()})")
    print(f"   {'pair':>6}{'CPU µs/req on':>16}{'off':>8}{'ratio':>8}{'req/s on':>11}{'off':>8}"
          f"{'ratio':>8}")
    bot = nginx_bot.NginxBot(workdir, 0)
    cpu_ratios, rate_ratios = [], []
    try:
        for i in range(COST_PAIRS):
            base = 5_000_000_000 + i * 200_000_000
            on_cpu, on_rate = cost_run(workdir, bot, "1000000", base)
            off_cpu, off_rate = cost_run(workdir, bot, "0", base + 100_000_000)
            cpu_ratios.append(on_cpu / off_cpu)
            rate_ratios.append(off_rate / on_rate if on_rate else float("nan"))
            print(f"   {i + 1:>6}{on_cpu:>16.0f}{off_cpu:>8.0f}{cpu_ratios[-1]:>8.3f}"
                  f"{on_rate:>11.0f}{off_rate:>8.0f}{rate_ratios[-1]:>8.3f}", flush=True)
    finally:
        bot.stop()
    print(f"   cost per request with RATE_LIMIT_PER_IP=1000000 over 0, median of the pairs: "
          f"CPU {(statistics.median(cpu_ratios) - 1) * 100:+.1f} %, "
          f"1 / req/s {(statistics.median(rate_ratios) - 1) * 100:+.1f} % ({load()})")


def scenario_sqlite64(workdir):
    """Scenario 1's first row alone: zero latency, c=64, SQLite, the per-address limit on, a few
    wrk runs on fresh stacks, each with the stack's CPU time per 200 answer (steadier than req/s
    on a loaded machine): the figure a change to the store's writes moves, quick enough to
    alternate two builds (OTP_BUILD_DIR) run after run."""
    print(f"\n1a. Zero Bot API latency, c=64, SQLite, RATE_LIMIT_PER_IP=1000000, "
          f"TELEGRAM_MAX_SENDS_PER_SECOND=10000: {SQLITE64_RUNS} wrk run(s) of {WRK_SECONDS} s, "
          f"a fresh stack each ({load()})")
    print(f"   {'run':>5}{'req/s':>8}{'p50':>10}{'p99':>10}{'CPU µs/req':>12}  other answers / "
          "socket errors")
    bot = nginx_bot.NginxBot(workdir, 0)
    rows = []
    try:
        for i in range(SQLITE64_RUNS):
            stack = Ours(workdir, bot, RAISED, "otp-gateway")
            try:
                pids = with_descendants(stack.root_pids())
                before = cpu_seconds(pids)
                res = wrk(stack, 64, workdir, 6_000_000_000 + i * 100_000_000)
                pids |= with_descendants(stack.root_pids())
                used = cpu_seconds(pids) - before
            finally:
                stack.stop()
            ok = res["answers"] - res["non200"]
            rows.append((res["ok_per_s"], res["p50"], res["p99"],
                         used * 1e6 / ok if ok else float("nan")))
            print(f"   {i + 1:>5}{rows[-1][0]:>8.0f}{fmt(rows[-1][1], '>8.1f', 'ms')}"
                  f"{fmt(rows[-1][2], '>8.1f', 'ms')}{rows[-1][3]:>12.0f}  "
                  f"{res['non200']} / {res['errors']}", flush=True)
    finally:
        bot.stop()
    med = [statistics.median(r[k] for r in rows) for k in range(4)]
    print(f"   median{med[0]:>7.0f}{fmt(med[1], '>8.1f', 'ms')}{fmt(med[2], '>8.1f', 'ms')}"
          f"{med[3]:>12.0f}  ({load()})")


class RedisStore:
    """A local redis-server on a unix socket for the OTP_STORE=redis row (nothing saved)."""

    def __init__(self, workdir):
        self.dir = Path(workdir) / f"redis-{free_port()}"
        self.dir.mkdir(parents=True)
        sock = self.dir / "redis.sock"
        self.url = f"redis+unix://{sock}"
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm",
                 "700", "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                 "--maxmemory-policy", "noeviction"],
                stdout=log, stderr=log, start_new_session=True)
        wait_until(lambda: sock.exists() or self.proc.poll() is not None, 10, "redis-server")
        if self.proc.poll() is not None:
            raise RuntimeError((self.dir / "redis.log").read_text())

    def stop(self):
        stop_group(self.proc)


class SentinelStore:
    """For the redis+sentinel row: a primary and its replica on loopback TCP, and one sentinel
    (quorum 1: nothing fails over here) that names the primary; nothing saved."""

    def __init__(self, workdir):
        self.dir = Path(workdir) / f"sentinel-{free_port()}"
        self.dir.mkdir(parents=True)
        self.procs = []
        self.primary, self.replica, port = free_port(), free_port(), free_port()
        for p, extra in ((self.primary, []),
                         (self.replica, ["--replicaof", "127.0.0.1", str(self.primary)])):
            self._start(f"redis-{p}", ["redis-server", "--bind", "127.0.0.1", "--port", str(p),
                                       "--dir", str(self.dir), "--dbfilename", f"{p}.rdb",
                                       "--save", "", "--appendonly", "no",
                                       "--maxmemory-policy", "noeviction", *extra])
        conf = self.dir / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor bench 127.0.0.1 {self.primary} 1\n")
        self._start("sentinel", ["redis-sentinel", str(conf)])
        wait_until(lambda: "connected" in self._cli(self.replica, "ROLE"), 20,
                   "the replica's first copy")
        wait_until(lambda: str(self.primary) in self._cli(
            port, "SENTINEL", "get-master-addr-by-name", "bench"), 20, "the sentinel")
        self.url = f"redis+sentinel://127.0.0.1:{port}/bench"

    def _start(self, name, argv):
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log,
                                               start_new_session=True))

    @staticmethod
    def _cli(port, *args):
        out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout

    def stop(self):
        for proc in self.procs:
            stop_group(proc)


def ratio(a, b):
    return f"{a['ok_per_s'] / b['ok_per_s']:.2f}x" if b["ok_per_s"] else "n/a (no 200 answers)"


# --- scenarios 2 and 3: 300 ms latency, open loop -----------------------------------------

def match_deletions(calls):
    """(sends, deleted, lags): the confirmed sends by (chat, message_id), those a deletion call
    named, and each one's lag (the call's arrival - (send's answer + expire_seconds))."""
    sends = {(str(c["body"].get("chat_id")), c["message_id"]): c for c in calls
             if c["method"] == "sendMessage" and c["status"] == 200}
    deleted, lags = set(), []
    for c in calls:
        if c["method"] not in ("deleteMessage", "deleteMessages") or c["status"] != 200:
            continue
        ids = c["body"].get("message_ids", [c["body"].get("message_id")])
        if isinstance(ids, str):  # form-encoded: a JSON array in a string
            ids = re.findall(r"\d+", ids)
        for mid in ids:
            key = (str(c["body"].get("chat_id")), int(mid) if mid is not None else None)
            if key in sends and key not in deleted:
                deleted.add(key)
                lags.append(c["at"] - (sends[key]["done"] + EXPIRE))
    return sends, deleted, lags


def max_in_flight(rate):
    """As many connections as clients waiting CLIENT_TIMEOUT at this rate (a stack that falls
    behind still gets every request, as from independent callers), within our file limit, which
    is raised when it can be."""
    want = int(rate * (CLIENT_TIMEOUT + 2)) + 100  # + the generator's own lag under load
    need = 2 * want + 1000  # in flight and idle sockets, and room for the rest of us
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, hard)))
        except (ValueError, OSError):  # not root: as far as the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return min(want, (soft - 1000) // 2)


def fmt(value, spec, unit=""):
    return format(value, spec) + unit if value == value else format("-", spec.split(".")[0]) + " " * len(unit)


def open_loop(stack, bot, rate, base):
    """Runs the open loop against stack, then waits for the deletions; returns the figures."""
    rss = PeakRss(stack)
    pids = with_descendants(stack.root_pids())
    cpu_before = cpu_seconds(pids)
    try:
        res = openloop.run("127.0.0.1", stack.port, rate, OPEN_SECONDS, lambda i: (
            b'{"chat_id": "%d", "otp": "123456", "expire_seconds": %d}' % (base + i, EXPIRE)),
            timeout=CLIENT_TIMEOUT, max_in_flight=max_in_flight(rate))
        started = last_progress = time.monotonic()
        seen = 0
        while True:
            sends, deleted, lags = match_deletions(bot.calls())
            now = time.monotonic()
            if len(deleted) > seen:
                seen, last_progress = len(deleted), now
            if len(deleted) >= len(sends) or now - last_progress > DRAIN_SECONDS or \
                    now - started > EXPIRE + DRAIN_SECONDS:
                break
            time.sleep(0.5)
    finally:
        peak = rss.stop()
    pids |= with_descendants(stack.root_pids())
    cpu = cpu_seconds(pids) - cpu_before
    return {"asked": int(rate * OPEN_SECONDS), "statuses": res.statuses,
            "cpu_per_send": cpu * 1e6 / len(sends) if sends else float("nan"),
            "tls_connections": len({c.get("connection") for c in bot.calls()}),
            "ok": res.statuses.get(200, 0), "p50": percentile(res.latencies, .5) * 1000,
            "p99": percentile(res.latencies, .99) * 1000,
            "all_p99": percentile(res.all_latencies, .99) * 1000,
            "sent": len(sends), "deleted": len(deleted), "lag_p50": percentile(lags, .5),
            "lag_p99": percentile(lags, .99), "lag_max": max(lags, default=float("nan")),
            "rss": peak, "pss": rss.peak_pss_kib / 1024, "nproc": rss.nproc, "late": res.max_late * 1000,
            "in_flight": res.max_in_flight}


def print_open(label, r):
    other = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items(), key=str) if k != 200)
    print(f"   {label:<22}{r['asked']:>7}{r['ok']:>7}{r['sent']:>7}{fmt(r['p50'], '>8.0f', 'ms')}"
          f"{fmt(r['p99'], '>8.0f', 'ms')}{r['deleted']:>9}{fmt(r['lag_p50'], '>8.2f', 's')}"
          f"{fmt(r['lag_p99'], '>8.2f', 's')}{r['rss']:>8.1f} MiB{r['pss']:>7.1f} MiB  {other or '-'}",
          flush=True)


def calibrate(workdir, rate):
    """The generator straight at the fake's sendMessage: neither should be the bottleneck."""
    seconds = min(OPEN_SECONDS, 10)
    bot = nginx_bot.NginxBot(workdir, LATENCY_MS)
    try:
        res = openloop.run("127.0.0.1", bot.port, rate, seconds, lambda i: (
            b'{"chat_id": "%d", "text": "calibration"}' % i), timeout=CLIENT_TIMEOUT,
            path=f"/bot{TOKEN}/sendMessage")
    finally:
        bot.stop()
    other = ", ".join(f"{k}: {v}" for k, v in sorted(res.statuses.items(), key=str) if k != 200)
    print(f"   {'(fake Bot API alone)':<22}{int(rate * seconds):>7}{res.statuses.get(200, 0):>7}"
          f"{'':>7}{fmt(percentile(res.latencies, .5) * 1000, '>8.0f', 'ms')}"
          f"{fmt(percentile(res.latencies, .99) * 1000, '>8.0f', 'ms')}  the generator straight at the fake "
          f"for {seconds} s: this load's floor  {other}", flush=True)


def scenario_tls(workdir, original):
    """Scenario 4: the same loads over plain HTTP and over TLS, one after the other."""
    print(f"\n4. The Bot API over TLS (a private CA, TELEGRAM_CA_FILE; session cache and tickets) "
          f"beside plain HTTP ({load()})\n   CPU/send = user + system time of the whole stack "
          "(lighttpd, every otp-fcgi, otp-deleter) during the run per message sent (the open "
          "loop's until every deletion);\n"
          "   connections = the client connections the fake saw (over TLS each began with a "
          "handshake)")
    certs = Path(workdir) / "pki"
    certs.mkdir()
    ca = pki.make_ca(certs, "bench-ca")
    cert = pki.make_server_cert(certs, ca)
    transports = [("HTTP", None, {}), ("TLS", cert, {"TELEGRAM_CA_FILE": str(ca[0])})]
    print(f"   zero latency, wrk c=64 {WRK_SECONDS} s, limits raised\n"
          f"   {'system':<34}{'req/s':>8}{'p50':>10}{'p99':>10}{'CPU/send':>11}{'connections':>13}")
    for n, (transport, tls, extra) in enumerate(transports):
        bot = nginx_bot.NginxBot(workdir, 0, tls=tls)
        try:
            stack = Ours(workdir, bot, dict(RAISED, **extra), f"otp-gateway, {transport}")
            try:
                pids = with_descendants(stack.root_pids())
                before = cpu_seconds(pids)
                res = wrk(stack, 64, workdir, 5_000_000_000 + n * 100_000_000)
                pids |= with_descendants(stack.root_pids())
                used = cpu_seconds(pids) - before
            finally:
                stack.stop()
            ok = res["answers"] - res["non200"]
            conns = len({c["connection"] for c in bot.calls()})
        finally:
            bot.stop()
        print(f"   {'otp-gateway, ' + transport:<34}{res['ok_per_s']:>8.0f}"
              f"{fmt(res['p50'], '>8.1f', 'ms')}{fmt(res['p99'], '>8.1f', 'ms')}"
              f"{fmt(used * 1e6 / ok if ok else float('nan'), '>8.0f', 'µs')}{conns:>13}", flush=True)
    if original:
        bot = nginx_bot.NginxBot(workdir, 0)
        try:
            stack = Original(workdir, bot, ORIGINAL_RAISED, "original, 2 workers", original, 2)
            try:
                pids = with_descendants(stack.root_pids())
                before = cpu_seconds(pids)
                res = wrk(stack, 64, workdir, 5_500_000_000)
                pids |= with_descendants(stack.root_pids())
                used = cpu_seconds(pids) - before
            finally:
                stack.stop()
        finally:
            bot.stop()
        ok = res["answers"] - res["non200"]
        print(f"   {'original, 2 workers, plain HTTP':<34}{res['ok_per_s']:>8.0f}"
              f"{fmt(res['p50'], '>8.1f', 'ms')}{fmt(res['p99'], '>8.1f', 'ms')}"
              f"{fmt(used * 1e6 / ok if ok else float('nan'), '>8.0f', 'µs')}", flush=True)
    settings = {"TELEGRAM_PAID_BROADCAST": "1", "RATE_LIMIT_PER_IP": "1000000"}
    print(f"   paid broadcast, open loop at {BROADCAST_RATE} sends/s for {OPEN_SECONDS} s, Bot API "
          f"latency {LATENCY_MS} ms, expire_seconds {EXPIRE} (columns as in scenario 2)\n"
          f"   {'system':<22}{'asked':>7}{'200s':>7}{'sent':>7}{'p50':>10}{'p99':>10}"
          f"{'deleted':>9}{'lag p50':>9}{'lag p99':>9}{'RSS':>12}{'PSS':>11}  other answers")
    results = {}
    for n, (transport, tls, extra) in enumerate(transports):
        label = f"otp-gateway, {transport}"
        bot = nginx_bot.NginxBot(workdir, LATENCY_MS, tls=tls)
        try:
            stack = Ours(workdir, bot, dict(settings, **extra), label)
            try:
                results[label] = open_loop(stack, bot, BROADCAST_RATE, 6_000_000_000 + n * 100_000_000)
            finally:
                stack.stop()
        finally:
            bot.stop()
        print_open(label[:22], results[label])
    for label, r in results.items():
        print(f"   {label}: CPU {fmt(r['cpu_per_send'], '.0f')} µs per send, "
              f"{r['tls_connections']} connections")


def scenario_open(workdir, original, title, rate, settings, base):
    print(f"\n{title} ({load()})\n   open loop at {rate} sends/s for {OPEN_SECONDS} s, Bot API latency "
          f"{LATENCY_MS} ms, expire_seconds {EXPIRE}; p50/p99 of 200 answers from when each\n"
          f"   was due (clients give up after {CLIENT_TIMEOUT} s); sent/deleted as the fake Bot API "
          "saw them; lag = deletion call's\n   arrival - (send's answer + expire); RSS, PSS = peaks "
          "of the whole stack's sums (PSS shares shared pages out)")
    print(f"   {'system':<22}{'asked':>7}{'200s':>7}{'sent':>7}{'p50':>10}{'p99':>10}"
          f"{'deleted':>9}{'lag p50':>9}{'lag p99':>9}{'RSS':>12}{'PSS':>11}  other answers")
    systems = [("otp-gateway", lambda bot: Ours(workdir, bot, settings, "otp-gateway"))]
    workers = int(os.environ.get("ORIGINAL_WORKERS", "2"))
    if original:
        label = f"original, {workers} worker{'s' if workers > 1 else ''}"
        systems.append((label, lambda bot: Original(workdir, bot, ORIGINAL_RAISED, label,
                                                    original, workers)))
    calibrate(workdir, rate)
    results = {}
    for n, (label, make) in enumerate(systems):
        bot = nginx_bot.NginxBot(workdir, LATENCY_MS)
        try:
            stack = make(bot)
            try:
                results[label] = open_loop(stack, bot, rate, base + n * 100_000_000)
            finally:
                stack.stop()
        finally:
            bot.stop()
        print_open(label, results[label])
    ours = results["otp-gateway"]
    print(f"   (generator: at most {ours['late']:.0f} ms late, {ours['in_flight']} requests in "
          f"flight; stack RSS over {ours['nproc']} processes)")
    for label, theirs in results.items():
        if label != "otp-gateway":
            print(f"   otp-gateway / {label}: sent {ours['sent']} vs {theirs['sent']}, "
                  f"p99 {fmt(ours['p99'], '.0f')} vs {fmt(theirs['p99'], '.0f')} ms, "
                  f"RSS {ours['rss']:.1f} vs {theirs['rss']:.1f} MiB, "
                  f"PSS {ours['pss']:.1f} vs {theirs['pss']:.1f} MiB")
    return results


def scenario_revoke(workdir):
    print(f"\n5. Revoke with {REVOKE_ROWS:,} rows pending: store_pending_claim(), POST "
          f"/revoke-otp's write transaction, for {REVOKE_CLAIMS:,} rows across the table "
          f"({load()})")
    stores = [("SQLite (tmpfs)", None)]
    redis = RedisStore(workdir) if shutil.which("redis-server") else None
    if redis is not None:
        stores.append(("Redis (unix socket)", redis))
    try:
        for label, server in stores:
            url = server.url if server else str(Path(workdir) / f"revoke-{free_port()}.db")
            p = subprocess.run([str(BUILD / "bench/revoke_claim"), url, str(REVOKE_ROWS),
                                str(REVOKE_CLAIMS)], capture_output=True, text=True,
                               timeout=600)
            m = re.fullmatch(r"claims (\d+) rows (\d+) median_us (\d+) p99_us (\d+) "
                             r"max_us (\d+)\n", p.stdout)
            if p.returncode != 0 or not m:
                raise RuntimeError(f"revoke_claim on {label}: {p.stdout}{p.stderr}")
            n, _, med, p99, top = (int(x) for x in m.groups())
            print(f"   {label:<22} {n:>6} claims   median {med / 1000:.3f} ms   "
                  f"p99 {p99 / 1000:.3f} ms   max {top / 1000:.3f} ms   "
                  f"(target: median <= 1 ms)", flush=True)
    finally:
        if redis is not None:
            redis.stop()


def main():
    why = nginx_bot.missing()
    if why:
        print(f"bench: {why}: nothing to measure", file=sys.stderr)
        return 1
    if shutil.which("wrk") is None and ONLY & {"zero", "cost"}:
        print("bench: wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 1
    original, why_not = find_original()
    print(f"make bench, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"{'smoke' if SMOKE else 'quick' if QUICK else 'full'} run; load generator, fake Bot API "
          f"and services share the machine; {load()}")
    print(f"original: {original}" if original else f"original: skipped: {why_not}")
    workdir = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None,
                               prefix="otp-bench-")
    try:
        if "zero" in ONLY:
            scenario_zero(workdir, original)
        elif "cost" in ONLY:  # scenario 1's last part alone
            print(f"\n1. Zero Bot API latency, limits raised (RATE_LIMIT_PER_IP=1000000, "
                  "TELEGRAM_MAX_SENDS_PER_SECOND=10000)")
            per_ip_cost(workdir)
        if "sqlite64" in ONLY:  # scenario 1's first row alone, asked for by name only
            scenario_sqlite64(workdir)
        if "broadcast" in ONLY:
            scenario_open(workdir, original, "2. Paid broadcast: TELEGRAM_PAID_BROADCAST=1, "
                          "RATE_LIMIT_PER_IP=1000000", BROADCAST_RATE,
                          {"TELEGRAM_PAID_BROADCAST": "1", "RATE_LIMIT_PER_IP": "1000000"},
                          3_000_000_000)
        if "default" in ONLY:
            scenario_open(workdir, original, "3. Default configuration (30 sends/s budget), "
                          "RATE_LIMIT_PER_IP=1000000", 30, {"RATE_LIMIT_PER_IP": "1000000"},
                          4_000_000_000)
        if "tls" in ONLY:
            scenario_tls(workdir, original)
        if "revoke" in ONLY:
            scenario_revoke(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
