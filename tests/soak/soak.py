#!/usr/bin/python3
"""make soak — a long run, not part of make test: SOAK_REQUESTS (100,000) sends through the whole
stack (conf/serve.sh, lighttpd, 2 otp-fcgi, otp-deleter, the emulator), 5 s expiry, 1,000 chats,
send budget and rate limits opened up so that the run takes minutes, not hours.

Checks, and exits 1 when one fails:
- every process's RSS and open descriptors are flat: sampled at the 10,000th request and every
  10,000 after it (SOAK_REQUESTS / 10), every sample to the 100,000th is within 5 % of the
  10,000th's (one more sample, at 5,000, shows the warm-up and is not compared). No slack is
  added for descriptors: at a quiet point (below) a count is exact, so 5 % of a small count
  (lighttpd's 7: 0.35) means "unchanged", and one descriptor more is a leak or a sample that
  was not quiet, both of which must show;
- the database's files stay bounded (SOAK_DB_MAX_MIB, 32);
- every request got 200 and every message sent is deleted at the end.
Prints the figures (for the README): a table of every process's samples.

Once, from the 50,000th request, otp-deleter is stopped (SIGSTOP) until SOAK_BACKLOG_ROWS
(8,000; 0: no stop) rows are overdue, at most 20 s (DELETER_HEARTBEAT_STALE_SECONDS is raised
to 30 so that sends go on): a Telegram outage in miniature, of the same size whatever the
machine's speed (the memory a backlog leaves grows with it). The backlog it then works off
(thousands of rows, calls queued by the thousand) must not leave its memory higher: glibc kept
such a backlog's freed heap, 11 % more RSS for good, until otp-deleter gave it back after
each pass.

Quiet points. What is compared is what a leak would grow, not what comes and goes with the
traffic, so samples are taken with nothing in flight. At each sample point the CLIENTS client
threads stop (a barrier: each finishes its request under way, closes its kept-alive connection
and waits); then, polled with deadlines from /proc and the database (a process that never gets
there fails the run):
- lighttpd holds no client connection and no connection to an otp-fcgi, and no otp-fcgi holds
  a FastCGI connection;
- otp-deleter has deleted every message sent so far (no row left: the last ones fall due 5 s
  after the pause began) and sleeps until the next due row (its pass over: the pass's memory
  given back). Its samples are then each taken at rest after the same kind of work, every one
  after it has deleted at all (without the wait, at 1,500 requests a second the 10,000th comes
  about when the first rows fall due, before its pool is open).
Then every process is sampled and the clients go on. Between sample points each client keeps
one connection alive (reopened only when lighttpd ends it, after 1,000 requests: its default
server.max-keep-alive-requests); closing them at the quiet point makes lighttpd's count exact
whatever its keep-alive limits (it idles an open one out after 5 s, which a pause outlasts).

otp-deleter's descriptors are counted in two parts: its kept-alive connections to the Bot API,
checked against DELETER_CONCURRENCY (16), their bound by design: libcurl keeps them for reuse
(tg_batch_new), so how many are open is how many it ever needed at once, a high-water mark a
pause does not settle; and everything else (database files, lock, log, libcurl's wakeup
pair), checked within 5 % like every other count. Leaking connections passes the bound within
seconds (10,000 deletions use 16 connections).
"""
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from conftest import SLOW, FakeBot, Gateway, wait_until  # noqa: E402

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "100000"))
FROM = max(2, REQUESTS // 10)   # compared from the 10,000th on: a sample every 10,000
POINTS = [FROM // 2, *range(FROM, REQUESTS, FROM), REQUESTS]  # and one in the warm-up
CLIENTS = 8
CHATS = 1000
DELETER_POOL = 16  # DELETER_CONCURRENCY's default
DB_MAX = float(os.environ.get("SOAK_DB_MAX_MIB", "32")) * 1024 * 1024
FLAT = 0.05
SETTLE_S = 30 * SLOW
EXPIRY_S = 5
DRAIN_S = (EXPIRY_S + 60) * SLOW  # the last rows fall due, and time enough for their pass
BACKLOG_AT = POINTS[len(POINTS) // 2 + 1]  # the stretch that ends here (60,000) has it
# as many rows as the stretch can make overdue, in a shorter run
BACKLOG_ROWS = min(int(os.environ.get("SOAK_BACKLOG_ROWS", "8000")), FROM * 8 // 10)
STOP_MAX_S = 20  # below DELETER_HEARTBEAT_STALE_SECONDS, 30 here: sends go on
TCP_LISTEN = "0A"
UNIX_LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's flags


def proc_field(pid, name, parse):
    """parse(/proc/pid/name's text), or None when the process is gone."""
    try:
        return parse(Path(f"/proc/{pid}/{name}").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def sockets():
    """inode -> ("tcp", local port, remote port, state) or ("unix", flags, path)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            found[f[9]] = ("tcp", int(f[1].rsplit(":", 1)[1], 16),
                           int(f[2].rsplit(":", 1)[1], 16), f[3])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        f = line.split()
        found[f[6]] = ("unix", int(f[3], 16), f[7] if len(f) > 7 else "")
    return found


def descriptors(pid):
    """What pid's descriptors are: a list of str (a path, pipe:..., anon_inode:...) and socket
    tuples (see sockets())."""
    table = sockets()
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            link = table.get(link[8:-1], ("socket", link))
        out.append(link)
    return out


class Stack:
    """The gateway's processes: found once the stack runs, each then followed by its pid."""

    def __init__(self, gw, bot):
        self.gw, self.bot = gw, bot
        serve = gw.lighttpd.pid
        lighttpd = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                    proc_field(p, "stat", lambda t: t.rsplit(")", 1)[1].split()[1]) == str(serve)
                    and proc_field(p, "comm", str.strip) == "lighttpd"]
        assert len(lighttpd) == 1, f"conf/serve.sh's lighttpd: {lighttpd}"
        self.pids = {"serve.sh": serve, "lighttpd": lighttpd[0], "otp-deleter": gw.deleter.pid}
        fcgi = [p for p in gw.children_left() if proc_field(p, "comm", str.strip) == "otp-fcgi"]
        assert len(fcgi) == 2, f"otp-fcgi processes: {fcgi}"
        for n, pid in enumerate(sorted(fcgi)):
            self.pids[f"otp-fcgi {n + 1}"] = pid

    def descriptors(self, name):
        try:
            return descriptors(self.pids[name])
        except FileNotFoundError:
            raise AssertionError(f"{name} ({self.pids[name]}) exited during the run") from None

    def in_flight(self):
        """What still comes and goes: lighttpd's client and back-end connections, otp-fcgi's
        FastCGI connections. Empty at a quiet point."""
        busy = []
        for name in self.pids:
            for d in self.descriptors(name):
                if name == "lighttpd" and d[0] == "tcp" and d[1] == self.gw.port \
                        and d[3] != TCP_LISTEN:
                    busy.append("lighttpd: a client connection")
                elif name == "lighttpd" and d[0] == "unix":
                    busy.append("lighttpd: a connection to otp-fcgi")
                elif name.startswith("otp-fcgi") and d[0] == "unix" and d[2] \
                        and not d[1] & UNIX_LISTENING:
                    busy.append(f"{name}: a FastCGI connection")
        return busy

    def deleter_asleep(self):
        """otp-deleter waits for the next due row (nanosleep), its pass over: it gives back
        the pass's memory as the pass ends. True where the kernel does not tell (wchan 0)."""
        try:
            wchan = Path(f"/proc/{self.pids['otp-deleter']}/wchan").read_text()
        except FileNotFoundError:
            raise AssertionError("otp-deleter exited during the run") from None
        return wchan == "0" or "nanosleep" in wchan

    def sample(self):
        """{name: (RSS KiB, descriptors, of which connections to the Bot API)} once quiet."""
        last = []

        def quiet():
            last[:] = self.in_flight()
            return not last
        try:
            wait_until(quiet, SETTLE_S, "a quiet point", interval=0.01)
        except AssertionError as e:
            raise AssertionError(f"{e}: still {last}") from None
        wait_until(lambda: self.gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)]
                   and self.deleter_asleep(), DRAIN_S,
                   "otp-deleter to delete every message sent and go to sleep", interval=0.05)
        out = {}
        for name, pid in self.pids.items():
            fds = self.descriptors(name)
            try:
                rss = rss_kib(pid)
            except FileNotFoundError:
                raise AssertionError(f"{name} ({pid}) exited during the run") from None
            bot = sum(1 for d in fds if d[0] == "tcp" and d[2] == self.bot.port)
            out[name] = (rss, len(fds), bot)
        return out


def db_bytes(gw):
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(gw.db_path + suffix)
        except FileNotFoundError:
            pass
    return total


class Clients:
    """CLIENTS threads sending POST /send-otp, each over a kept-alive connection of its own,
    that stop together at every sample point (run_to)."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(CLIENTS + 1)
        self.next = self.limit = 0
        self.bad = 0
        self.errors = []
        self.threads = [threading.Thread(target=self.client, daemon=True)
                        for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def take(self):
        with self.lock:
            if self.limit is None or self.next >= self.limit:
                return None
            self.next += 1
            return self.next - 1

    def send(self, conn, i):
        body = json.dumps({"chat_id": str(1_000_000 + i % CHATS), "otp": "123456",
                           "expire_seconds": EXPIRY_S})
        conn.request("POST", "/send-otp", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200

    def client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while True:
                self.barrier.wait()  # the next stretch is set (limit None: the end)
                if self.limit is None:
                    return
                while (i := self.take()) is not None:
                    try:
                        ok = self.send(conn, i)
                    except (OSError, http.client.HTTPException) as e:
                        conn.close()
                        ok = False
                        with self.lock:
                            self.errors.append(repr(e))
                    if not ok:
                        with self.lock:
                            self.bad += 1
                conn.close()
                self.barrier.wait()  # every request of the stretch answered
        except threading.BrokenBarrierError:
            pass
        except BaseException:
            self.barrier.abort()
            raise

    def run_to(self, limit):
        """Sends requests up to number limit (exclusive) and returns once every one of them
        was answered and every client waits with its connection closed."""
        self.limit = limit
        self.barrier.wait()
        self.barrier.wait()

    def finish(self):
        """Ends the clients: at once when they are not all waiting for the next stretch."""
        self.limit = None
        try:
            self.barrier.wait(timeout=1)
        except threading.BrokenBarrierError:
            self.barrier.abort()
        for t in self.threads:
            t.join(35)  # a request under way ends within its timeout


def table(samples, db_at):
    names = list(samples[POINTS[0]])
    head = f"{'requests':>9s} " + "".join(f"{n:>16s}" for n in names) + f"{'db KiB':>9s}"
    lines = [head, f"{'':>9s} " + "".join(f"{'RSS MiB/fds':>16s}" for _ in names)]
    for n in POINTS:
        cells = []
        for name in names:
            rss, fds, bot = samples[n][name]
            pool = f"({bot})" if name == "otp-deleter" else ""
            cells.append(f"{rss / 1024:.2f}/{fds}{pool}".rjust(16))
        mark = "*" if n == FROM else " "
        lines.append(f"{n:>8d}{mark} " + "".join(cells) + f"{db_at[n] // 1024:>9d}")
    return "\n".join(lines)


def check(samples):
    """The failures of the flatness check: every sample from FROM on against FROM's."""
    failures = []
    base = samples[FROM]
    for name, (rss0, fds0, bot0) in base.items():
        rest0 = fds0 - bot0 if name == "otp-deleter" else fds0
        worst_rss = worst_fds = 0.0
        for n in POINTS:
            if n < FROM:
                continue
            rss, fds, bot = samples[n][name]
            rest = fds - bot if name == "otp-deleter" else fds
            worst_rss = max(worst_rss, abs(rss - rss0) / rss0)
            worst_fds = max(worst_fds, abs(rest - rest0) / rest0)
            if abs(rss - rss0) > FLAT * rss0:
                failures.append(f"{name}: RSS {rss0} KiB at {FROM}, {rss} KiB at {n}")
            if abs(rest - rest0) > FLAT * rest0:
                failures.append(f"{name}: {rest0} descriptors at {FROM}, {rest} at {n}")
            if name == "otp-deleter" and bot > DELETER_POOL:
                failures.append(f"{name}: {bot} connections to the Bot API at {n}, above "
                                f"its pool's {DELETER_POOL}")
        what = "descriptors but its pool" if name == "otp-deleter" else "descriptors"
        print(f"{name:12s} from request {FROM}: RSS within {100 * worst_rss:.1f} %, "
              f"{what} within {100 * worst_fds:.1f} %")
    return failures


def soak(gw, bot):
    """The run; returns its failures (an AssertionError: the run could not go on)."""
    failures = []
    stack = Stack(gw, bot)
    samples, db_at, db_max = {}, {}, [0]
    running = threading.Event()
    running.set()

    def watch_db():
        while running.is_set():
            db_max[0] = max(db_max[0], db_bytes(gw))
            time.sleep(0.2)
    watcher = threading.Thread(target=watch_db, daemon=True)
    watcher.start()
    clients = Clients(gw.port)
    deleter = stack.pids["otp-deleter"]
    backlog = []
    ending = threading.Event()

    def overdue():
        return gw.db_rows("SELECT count(*) FROM pending_deletions WHERE "
                          f"delete_at_ms <= {int(time.time() * 1000)}")[0][0]

    def hold():
        """otp-deleter stays stopped until BACKLOG_ROWS rows are overdue (a deadline: the
        heartbeat's 30 s)."""
        start = time.monotonic()
        try:
            while not ending.is_set() and time.monotonic() - start < STOP_MAX_S and \
                    overdue() < BACKLOG_ROWS:
                time.sleep(0.05)
            backlog.append((overdue(), time.monotonic() - start))
        finally:
            os.kill(deleter, signal.SIGCONT)
    holder = threading.Thread(target=hold, daemon=True)
    try:
        t0 = time.monotonic()
        paused = 0.0
        for n in POINTS:
            if n == BACKLOG_AT and BACKLOG_ROWS > 0:
                os.kill(deleter, signal.SIGSTOP)
                holder.start()
            clients.run_to(n)
            t1 = time.monotonic()
            samples[n] = stack.sample()
            db_at[n] = db_bytes(gw)
            paused += time.monotonic() - t1
            print(f"{n:>8d} requests, {time.monotonic() - t0:4.0f} s", flush=True)
        took = time.monotonic() - t0
    finally:
        ending.set()
        if holder.is_alive():
            holder.join()
        os.kill(deleter, signal.SIGCONT)
        clients.finish()
        running.clear()
        watcher.join()
    print(f"{REQUESTS} requests in {took:.0f} s ({REQUESTS / (took - paused):.0f}/s between "
          f"the {len(POINTS)} quiet points, which took {paused:.1f} s in all), "
          f"{clients.bad} not 200")
    if clients.bad:
        failures.append(f"{clients.bad} requests were not answered 200 "
                        f"(first errors: {clients.errors[:3]})")

    wait_until(lambda: all(m["deleted_at"] for m in bot.messages()), 120 * SLOW,
               "every message to be deleted", interval=1)
    sent = len(bot.messages())
    print(f"messages sent {sent}, all deleted")
    if backlog:
        at = POINTS[POINTS.index(BACKLOG_AT) - 1]
        print(f"otp-deleter stopped for {backlog[0][1]:.1f} s from the {at}th request: "
              f"{backlog[0][0]} rows overdue when it went on")
    if sent != REQUESTS - clients.bad:
        failures.append(f"{sent} messages at Telegram for {REQUESTS - clients.bad} 200s")

    print(table(samples, db_at))
    print(f"(* the sample every later one is compared with; otp-deleter's connections to the "
          f"Bot API in brackets, at most {DELETER_POOL})")
    failures += check(samples)
    print(f"database files at most {db_max[0] / 1024:.0f} KiB")
    if db_max[0] > DB_MAX:
        failures.append(f"database files reached {db_max[0]} bytes")
    return failures


def main():
    workdir = tempfile.mkdtemp(dir="/dev/shm", prefix="otp-soak-")
    bot = FakeBot(workdir)
    sub = Path(workdir) / "gw"
    sub.mkdir()
    gw = Gateway(sub, bot, {"RATE_LIMIT_PER_USER": "1000000", "RATE_LIMIT_PER_IP": "0",
                            "TELEGRAM_MAX_SENDS_PER_SECOND": "10000", "LOG_LEVEL": "WARNING",
                            "DELETER_CONCURRENCY": str(DELETER_POOL),
                            # the stop below must not make the heartbeat stale
                            "DELETER_HEARTBEAT_STALE_SECONDS": "30"})
    try:
        gw.start()
        failures = soak(gw, bot)
    except AssertionError as e:
        failures = [str(e)]
    finally:
        gw.stop()
        bot.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for f in failures:
        print("FAILED:", f)
    print("soak: ok" if not failures else "soak: FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
