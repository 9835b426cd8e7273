"""No single point of failure: gateway stacks on OTP_STORE=redis+sentinel://, against a real
primary, a real replica and three real sentinels on loopback (Debian's redis-sentinel). The
primary is killed while sends go on; a replica is frozen. Nothing answered 200 may be lost: every
such message is deleted, never before its delete_at, whatever failed over in between."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, SLOW, free_port, parse_iso, stop_process, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-sentinel") is None,
                                reason="redis-sentinel is not installed")

MASTER = "otp-primary"


EXAMPLE = ROOT / "conf/sentinel"
PASSWORDS = {}  # port -> the password redis-cli gives it


def cli(port, *args, timeout=5):
    auth = ["--no-auth-warning", "-a", PASSWORDS[port]] if port in PASSWORDS else []
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *auth,
                          *map(str, args)], capture_output=True, timeout=timeout)
    return out.stdout.decode().strip()


def conf_value(path, key):
    return next(line.split()[-1] for line in path.read_text().splitlines()
                if line.startswith(key + " "))


class Cluster:
    """A primary, one replica and three sentinels (down-after 1 s, failover timeout 3 s), each
    in a directory of its own on a free loopback port. example=True starts them from the files
    of conf/sentinel/ (addresses, ports, directories and the down-after moved to the test's),
    passwords included."""

    def __init__(self, workdir, example=False):
        self.dir = Path(workdir) / "sentinel-cluster"
        self.dir.mkdir()
        self.example = example
        self.procs = {}
        self.primary = self.server("primary")
        self.replica = self.server("replica", "--replicaof", "127.0.0.1", str(self.primary))
        self.sentinels = [self.sentinel(i) for i in range(3)]
        wait_until(self.ready, 20 * SLOW, "the sentinels to know the replica and each other",
                   interval=0.2)

    def _start(self, name, argv):
        log = open(self.dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def server(self, name, *args, port=None):
        port = port or free_port()
        d = self.dir / name
        d.mkdir(exist_ok=True)
        if self.example:
            conf = EXAMPLE / f"redis-{name}.conf"
            PASSWORDS[port] = conf_value(conf, "requirepass")
            self._start(name, ["redis-server", str(conf), "--bind", "127.0.0.1",
                               "--port", str(port), "--dir", str(d), *args])
        else:
            self._start(name, ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                               "--dir", str(d), "--save", "", "--appendonly", "no",
                               "--maxmemory-policy", "noeviction",
                               "--repl-diskless-sync-delay", "0", *args])
        wait_until(lambda: cli(port, "PING") == "PONG", 10 * SLOW, f"redis {name}")
        return port

    def sentinel(self, i):
        port = free_port()
        conf = self.dir / f"sentinel-{i}.conf"  # sentinel rewrites its file: one each
        if self.example:
            text = (EXAMPLE / "sentinel.conf").read_text()
            for old, new in ((r"^port .*", f"port {port}"), (r"^bind .*", "bind 127.0.0.1"),
                             (r"^dir .*", f"dir {self.dir}"),
                             (r"10\.0\.0\.11 6379", f"127.0.0.1 {self.primary}"),
                             (r"down-after-milliseconds (\S+) \d+",
                              r"down-after-milliseconds \1 1000"),
                             (r"failover-timeout (\S+) \d+", r"failover-timeout \1 3000")):
                text, n = re.subn(old, new, text, flags=re.M)
                assert n == 1, old
            conf.write_text(text)
            PASSWORDS[port] = conf_value(EXAMPLE / "sentinel.conf", "requirepass")
        else:
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 3000\n"
                            f"sentinel parallel-syncs {MASTER} 1\n")
        self._start(f"sentinel-{i}", ["redis-sentinel", str(conf)])
        wait_until(lambda: cli(port, "PING") == "PONG", 10 * SLOW, f"sentinel {i}")
        return port

    def ready(self):
        for port in self.sentinels:
            info = cli(port, "SENTINEL", "master", MASTER).split("\n")
            fields = dict(zip(info[0::2], info[1::2]))
            if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                return False
        return cli(self.primary, "ROLE").startswith("master") and \
            "connected" in cli(self.replica, "ROLE")

    def primary_port(self):
        """The port the sentinels name now."""
        out = cli(self.sentinels[0], "SENTINEL", "get-master-addr-by-name", MASTER).split()
        return int(out[1]) if len(out) == 2 else None

    def url(self, prefix):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}?prefix={prefix}"

    def signal(self, name, sig):
        os.killpg(self.procs[name].pid, sig)

    def stop(self):
        for name, proc in self.procs.items():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            stop_process(proc)


@pytest.fixture
def cluster(workdir):
    c = Cluster(workdir)
    yield c
    c.stop()


def stacks(make_gateway, cluster, n, **env):
    return [make_gateway(env={"OTP_STORE": cluster.url("shared:"),
                              "OTP_HOST_NAME": f"host-{i}",
                              "TELEGRAM_MAX_SENDS_PER_SECOND": "1000", **env})
            for i in range(n)]


def delete_calls(bot):
    """(chat_id, message_id) -> how many deletion calls named it."""
    counts = {}
    for req in bot.requests("deleteMessage") + bot.requests("deleteMessages"):
        p = req["params"]
        ids = p.get("message_ids")
        if isinstance(ids, str):
            ids = json.loads(ids)
        for mid in ids if ids is not None else [p["message_id"]]:
            key = (str(p["chat_id"]), int(mid))
            counts[key] = counts.get(key, 0) + 1
    return counts


def metric(gw, name):
    for line in gw.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class Sender:
    """A steady rate of sends to distinct chats over the stacks, from a pool of threads; records
    each answer with its start and end (monotonic)."""

    def __init__(self, gws, per_second, base_chat):
        self.gws, self.interval, self.base = gws, 1.0 / per_second, base_chat
        self.results = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(32)
        self.thread = threading.Thread(target=self._run)

    def _one(self, i):
        expire = random.Random(i).randint(5, 10)
        start = time.monotonic()
        try:
            r = self.gws[i % len(self.gws)].send_otp(
                {"chat_id": str(self.base + i), "otp": "2468", "expire_seconds": expire})
        except OSError as e:
            r = e
        with self.lock:
            self.results.append((i, start, time.monotonic(), expire, r))

    def _run(self):
        t0, i = time.monotonic(), 0
        while not self.stop.is_set():
            self.pool.submit(self._one, i)
            i += 1
            time.sleep(max(0.0, t0 + i * self.interval - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.pool.shutdown(wait=True)


def longest_gap(results, since, until):
    """The longest time within [since, until] without a 200 answered."""
    oks = sorted(end for _, _, end, _, r in results if getattr(r, "status", None) == 200)
    points = [since] + [t for t in oks if since <= t <= until] + [until]
    return max(b - a for a, b in zip(points, points[1:]))


def assert_every_200_deleted_once_never_early(bot, results, cluster_ports=()):
    answered = {(r.json["chat_id"], r.json["message_id"]): (r, expire)
                for _, _, _, expire, r in results if getattr(r, "status", None) == 200}

    def all_gone():
        msgs = bot.messages()
        return all(m["deleted_at"] is not None for m in msgs) and msgs
    try:
        msgs = wait_until(all_gone, 10 + 20 * SLOW, "every message's deletion", interval=0.25)
    except AssertionError:  # which ones, and what each node holds of them
        left = [m for m in bot.messages() if m["deleted_at"] is None]
        ok = {k[0] for k in answered}
        for port in cluster_ports:
            for m in left[:5]:
                f = f"{m['chat_id']}:{m['message_id']}"
                i = cli(port, "HGET", "shared:pending:by-message", f)
                print(f"node {port}: {f} (answered 200: {m['chat_id'] in ok}) row {i!r}:",
                      cli(port, "HGETALL", f"shared:pending:{i}").split(),
                      cli(port, "ZSCORE", "shared:pending:due", i), "now", time.time())
        raise
    by_key = {(str(m["chat_id"]), m["message_id"]): m for m in msgs}
    for key, (r, expire) in answered.items():
        m = by_key[key]
        assert m["deleted_at"] >= parse_iso(r.json["delete_at"]), f"{key} deleted before delete_at"
        assert m["deleted_at"] >= m["sent_at"] + expire - 0.001, f"{key} deleted early"
    # a message is deleted once; a row removed on the old primary and not yet replicated comes
    # back with the failover and is asked again: Telegram's "not found" ends it (counted)
    calls = delete_calls(bot)
    assert set(answered) <= set(calls)
    again = [k for k in answered if calls[k] > 1]
    print(f"{len(answered)} answered 200; {len(again)} asked to be deleted again after the "
          "failover (answered 'not found')")
    return answered


def failed_over(cluster, old):
    """Waits for the sentinels to name another primary than old, and for it to say so."""
    def done():
        new = cluster.primary_port()
        return new not in (old, None) and cli(new, "ROLE").startswith("master") and new
    return wait_until(done, 20 * SLOW, "the sentinels to promote the replica", interval=0.1)


def oks_since(sender, t):
    return sum(1 for _, start, _, _, r in sender.results
               if start > t and getattr(r, "status", 0) == 200)


@pytest.mark.serial  # failovers' timing (sentinels' 1 s down-after) under a loaded machine
def test_a_killed_then_a_frozen_primary_fail_over_and_no_acknowledged_deletion_is_lost(
        make_gateway, cluster, bot):
    """20 sends/s over two stacks. The primary is killed (-9); once the replica is promoted, the
    old primary returns as its replica and the new primary is frozen (SIGSTOP) for 5 s: the
    sentinels fail over back. Every send answered 200 is deleted, never before its delete_at;
    the others answer 503, never 500; the longest time without a 200 after each fault is
    printed."""
    gws = stacks(make_gateway, cluster, 2)
    first = cluster.primary_port()
    faults = []
    with Sender(gws, per_second=20, base_chat=9100000) as sender:
        wait_until(lambda: oks_since(sender, 0) >= 40, 10 * SLOW, "sends to go through")
        faults.append(("killed", time.monotonic()))
        cluster.signal("primary", signal.SIGKILL)
        second = failed_over(cluster, first)
        wait_until(lambda: oks_since(sender, time.monotonic() - 1) >= 10, 20 * SLOW,
                   "sends to succeed on the new primary", interval=0.1)
        # the old primary comes back, empty, as the new one's replica: sends wait for its first
        # sync (it could be promoted before it holds what they wrote)
        faults.append(("back as a replica", time.monotonic()))
        cluster.server("primary", "--replicaof", "127.0.0.1", str(second), port=first)
        wait_until(lambda: ",connected," in "," + cli(first, "ROLE").replace("\n", ",") + ",",
                   20 * SLOW, "the old primary to follow the new one", interval=0.1)
        wait_until(lambda: oks_since(sender, time.monotonic() - 1) >= 10, 20 * SLOW,
                   "sends to succeed with the replica back", interval=0.1)
        faults.append(("frozen", time.monotonic()))
        cluster.signal("replica", signal.SIGSTOP)  # the replica of the start is the primary now
        try:
            third = failed_over(cluster, second)
            assert third == first
            time.sleep(max(0.0, faults[-1][1] + 5 - time.monotonic()))
        finally:
            cluster.signal("replica", signal.SIGCONT)
        thawed = time.monotonic()
        wait_until(lambda: oks_since(sender, thawed + 1) >= 20, 20 * SLOW,
                   "sends to succeed after the thaw", interval=0.1)
    results = sender.results
    statuses = [getattr(r, "status", repr(r)) for _, _, _, _, r in results]
    slowest = max(end - start for _, start, end, _, _ in results)
    end = max(t for _, _, t, _, _ in results)
    gaps = [(what, longest_gap(results, t, faults[i + 1][1] if i + 1 < len(faults) else end))
            for i, (what, t) in enumerate(faults)]
    print(f"\n{len(results)} sends: {statuses.count(200)} × 200, {statuses.count(503)} × 503; "
          + "; ".join(f"longest gap without a 200 after the primary was {what}: {g:.1f} s"
                      for what, g in gaps) + f"; slowest answer {slowest:.1f} s")
    assert set(statuses) <= {200, 503}, [s for s in statuses if s not in (200, 503)][:5]
    for _, _, _, _, r in results:
        if r.status == 503:
            assert r.json["success"] is False and r.headers.get("Retry-After"), r
    # TELEGRAM_SEND_WAIT_MS, plus asking the sentinels and connecting twice, plus the WAIT
    assert slowest < 2 + 4 + 1 + 2 * SLOW, f"an answer took {slowest:.1f} s"
    for what, g in gaps:  # the freeze itself lasts 5 s
        assert g < (5 if what == "frozen" else 0) + 10 * SLOW, f"no 200 for {g:.1f} s ({what})"
    try:
        assert_every_200_deleted_once_never_early(bot, results, (first, second))
    except AssertionError:  # when each undeleted send ran, against the faults, and its log
        t0 = faults[0][1]
        print("faults (s after the kill):", [(w, round(t - t0, 2)) for w, t in faults])
        left = {str(m["chat_id"]) for m in bot.messages() if m["deleted_at"] is None}
        for i, start, end, _, r in results:
            if str(9100000 + i) in left:
                print(f"undeleted send {i}: {start - t0:.2f} s to {end - t0:.2f} s: {r}")
        for gw in gws:
            for line in gw.log_text().splitlines():
                if any(f'"****{c[-3:]}"' in line for c in left) or "changed" in line:
                    print(line[:400])
        raise
    # the primary holds nothing pending once everything is deleted
    wait_until(lambda: cli(first, "ZCARD", "shared:pending:due") == "0", 10 * SLOW,
               "no pending row left")
    wait_until(lambda: sum(metric(gw, "otp_store_primary_changes_total") for gw in gws) >= 2,
               10 * SLOW, "the changes of primary in /metrics")
    text = "".join(gw.log_text() for gw in gws)
    assert f"Redis primary of {MASTER} changed: 127.0.0.1:{second} is the primary now" in text
    assert f"Redis primary of {MASTER} changed: 127.0.0.1:{first} is the primary now" in text


@pytest.mark.serial  # the frozen replica's second and the recovery are timed
def test_a_frozen_replica_withdraws_sends_until_it_returns(make_gateway, cluster, bot):
    [gw] = stacks(make_gateway, cluster, 1, OTP_REDIS_WAIT_MS="500")
    r = gw.send_otp({"chat_id": "9200001", "otp": "1357", "expire_seconds": 5})
    assert r.status == 200, r
    cluster.signal("replica", signal.SIGSTOP)
    try:
        frozen = [gw.send_otp({"chat_id": str(9200100 + i), "otp": "1357",
                               "expire_seconds": 5}) for i in range(3)]
        for r in frozen:
            assert r.status == 503, r
            assert r.json["detail"] == ("The message could not be recorded for deletion and "
                                        "was withdrawn"), r
            assert r.headers.get("Retry-After") == "1"
        # withdrawn: sent, then deleted at once, nothing left in the chat
        for i in range(3):
            [m] = bot.messages(str(9200100 + i))
            assert m["deleted_at"] is not None and m["deleted_at"] < m["sent_at"] + 5, m
    finally:
        cluster.signal("replica", signal.SIGCONT)

    def sends_again():
        r = gw.send_otp({"chat_id": "9200200", "otp": "1357", "expire_seconds": 5})
        return r.status == 200 and r
    wait_until(sends_again, 10 * SLOW, "sends to succeed once the replica is back", interval=0.2)
    assert "reached 0 of the 1 replica(s) it needs within 500 ms" in gw.log_text()


def test_sentinels_that_do_not_know_the_master_answer_503_not_500(make_gateway, cluster, bot):
    """A wrong master name: every sentinel answers nil. Nothing is sent, /health says why."""
    gw = make_gateway(env={"OTP_STORE": cluster.url("other:").replace(MASTER, "no-such-master")},
                      deleter=False)
    r = gw.send_otp({"chat_id": "9300001", "otp": "1357"})
    assert r.status == 503, r
    assert bot.messages("9300001") == []
    assert "does not know the master no-such-master" in gw.log_text()


def test_the_sentinel_example_runs_with_its_passwords_from_files(make_gateway, workdir, bot):
    """conf/sentinel: the primary's, the replica's and the sentinels' files (addresses, ports and
    directories moved to the test's) and a host's settings file; the data nodes' and the
    sentinels' passwords read from their files, never logged; a wrong sentinel password is
    refused at start without being quoted."""
    cluster = Cluster(workdir, example=True)
    try:
        data_pw = conf_value(EXAMPLE / "redis-primary.conf", "requirepass")
        sentinel_pw = conf_value(EXAMPLE / "sentinel.conf", "requirepass")
        assert data_pw != sentinel_pw
        files = {}
        for name, pw in (("redis-password", data_pw), ("sentinel-password", sentinel_pw)):
            files[name] = Path(workdir) / name
            files[name].write_text(pw + "\n")
        hosts = ",".join(f"127.0.0.1:{p}" for p in cluster.sentinels)
        gw = make_gateway(env={"OTP_ENV_FILE": str(EXAMPLE / "gateway.env"),
                               "OTP_STORE": f"redis+sentinel://{hosts}/{MASTER}/0",
                               "OTP_REDIS_PASSWORD_FILE": str(files["redis-password"]),
                               "OTP_REDIS_SENTINEL_PASSWORD_FILE": str(files["sentinel-password"]),
                               "HOST": "127.0.0.1"})
        r = gw.send_otp({"chat_id": "9400001", "otp": "8642", "expire_seconds": 5})
        assert r.status == 200, r
        # the row is on the primary and, before the 200, on the replica
        assert cli(cluster.replica, "ZCARD", "otp:pending:due") == "1"
        text = gw.log_text()
        assert data_pw not in text and sentinel_pw not in text
        assert f"Redis primary of {MASTER}: 127.0.0.1:{cluster.primary}" in text
        files["sentinel-password"].write_text("wrong-" + sentinel_pw)
        out = subprocess.run([str(BUILD / "otp-deleter")], env=gw.env, capture_output=True,
                             text=True, timeout=20)
        assert out.returncode != 0
        assert "AUTH" in out.stderr and sentinel_pw not in out.stderr, out.stderr
        wait_until(lambda: bot.messages("9400001")[0]["deleted_at"], 10 * SLOW, "the deletion")
    finally:
        cluster.stop()


def test_sentinels_down_change_nothing_while_the_primary_lives(make_gateway, cluster, bot):
    """Every sentinel gone: a stack keeps its connections (its checks every 5 s find the
    sentinels out of reach and change nothing) and sends; a stack that must connect anew finds
    no primary and answers 503, sending nothing."""
    [gw] = stacks(make_gateway, cluster, 1)
    assert gw.send_otp({"chat_id": "9500001", "otp": "1122"}).status == 200
    for i in range(3):
        cluster.signal(f"sentinel-{i}", signal.SIGKILL)
    assert gw.send_otp({"chat_id": "9500002", "otp": "1122"}).status == 200
    time.sleep(5.5)  # past the 5 s check of a live connection: it asks the sentinels now
    r = gw.send_otp({"chat_id": "9500003", "otp": "1122"})
    assert r.status == 200, r
    late = make_gateway(env={"OTP_STORE": cluster.url("shared:")}, deleter=False)
    r = late.send_otp({"chat_id": "9500004", "otp": "1122"})
    assert r.status == 503, r
    assert bot.messages("9500004") == []
    assert "asking the sentinel at 127.0.0.1:" in late.log_text()
