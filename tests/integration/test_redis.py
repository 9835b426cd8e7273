"""Several hosts, one promise: complete stacks (lighttpd + otp-fcgi pool + otp-deleter) sharing
one real redis-server. Each test starts its own server (loopback TCP and a unix socket), so that
it can stop, pause or restart it."""
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, RedisServer, parse_iso, wait_until



@pytest.fixture
def redis(workdir):
    server = RedisServer(f"{workdir}/redis", appendonly=True)
    yield server
    server.stop()


def stacks(make_gateway, redis, n=2, unix=True, **env):
    """n complete stacks on one Redis key space, each a host of its own for metrics."""
    return [make_gateway(env={"OTP_STORE": redis.url("shared:", unix=unix),
                              "OTP_HOST_NAME": f"host-{i}", **env}) for i in range(n)]


def delete_calls(bot):
    """(chat_id, message_id) -> how many deletion calls named it (deleteMessage(s))."""
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


def test_the_per_chat_limit_holds_across_two_stacks(make_gateway, redis, bot):
    a, b = stacks(make_gateway, redis, RATE_LIMIT_PER_USER="5", unix=False)
    answers = [(a if i % 2 else b).send_otp({"chat_id": "5150", "otp": "1234"}) for i in range(10)]
    statuses = [r.status for r in answers]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(429) == 5, statuses
    assert len(bot.messages("5150")) == 5
    # each host's /metrics counts its own sends only: Prometheus sums the hosts
    sent_a = sum(1 for i, r in enumerate(answers) if i % 2 and r.status == 200)
    wait_until(lambda: metric(a, "otp_sent_total") == sent_a, 5, "host-0's metrics")
    assert metric(b, "otp_sent_total") == 5 - sent_a


def test_500_otps_through_two_stacks_are_each_deleted_once_and_never_early(make_gateway, redis,
                                                                           bot):
    gws = stacks(make_gateway, redis, TELEGRAM_MAX_SENDS_PER_SECOND="1000")

    def send(i):
        return gws[i % 2].send_otp({"chat_id": str(700000 + i), "otp": "4321",
                                    "expire_seconds": 5})
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(500)))
    assert [r.status for r in answers] == [200] * 500, [r for r in answers if r.status != 200][:3]
    promised = {(r.json["chat_id"], r.json["message_id"]): parse_iso(r.json["delete_at"])
                for r in answers}

    def all_gone():
        msgs = bot.messages()
        return len(msgs) == 500 and all(m["deleted_at"] is not None for m in msgs) and msgs
    msgs = wait_until(all_gone, 5 + 20 * SLOW, "every message's deletion", interval=0.2)
    for m in msgs:
        key = (str(m["chat_id"]), m["message_id"])
        assert m["deleted_at"] >= promised[key], f"{key} deleted before its delete_at"
        # the store keeps milliseconds: the emulator's finer clock may read up to 1 ms more
        assert m["deleted_at"] >= m["sent_at"] + 5.0 - 0.001, f"{key} deleted early"
    calls = delete_calls(bot)
    assert set(calls) == set(promised)
    assert [k for k, n in calls.items() if n != 1] == [], "a message was deleted twice"
    wait_until(lambda: redis.cli("ZCARD", "shared:pending:due") == "0", 5, "no pending left")


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_stack_killed_mid_deletion_leaves_everything_to_the_other(make_gateway, redis, bot):
    """Host A's otp-deleter is the only one running when the rows fall due, so it claims them
    all; it dies mid-call with its whole stack. Host B's deleter, started then, cannot take them
    before the lease ends, and deletes every one of them by delete_at + the lease."""
    # deletions take 4 s (under a 5 s timeout, so the lease is 2 x 5 + 10 s): A's deleter is
    # inside its calls when it dies, and no call ends before every row has fallen due and been
    # claimed, however slowly the 40 sends go on a loaded machine
    timeout_s, call_s = 5, 4
    lease_s = 2 * timeout_s + 10
    env = {"OTP_STORE": redis.url("shared:"), "TELEGRAM_TIMEOUT_SECONDS": str(timeout_s)}
    a = make_gateway(env=env | {"OTP_HOST_NAME": "host-a"})
    b = make_gateway(env=env | {"OTP_HOST_NAME": "host-b"},
                     deleter=False)  # sends on A's heartbeat: any deleter anywhere counts
    bot.config(method_latency_ms={"deleteMessage": call_s * 1000, "deleteMessages": call_s * 1000})
    answers = [(a if i % 2 else b).send_otp({"chat_id": str(810000 + i), "otp": "9999",
                                             "expire_seconds": 5}) for i in range(40)]
    assert [r.status for r in answers] == [200] * 40
    last_due = max(parse_iso(r.json["delete_at"]) for r in answers) + 1  # (truncated to s)

    def all_claimed():  # a claim moves a row's score to its lease's end, past now
        scores = redis.cli("ZRANGE", "shared:pending:due", 0, -1, "WITHSCORES").split()[1::2]
        return len(scores) == 40 and all(int(x) > time.time() * 1000 + 5000 for x in scores)
    wait_until(all_claimed, 10 * SLOW + call_s, "host A's deleter to claim every row",
               interval=0.05)
    claimed_at = time.time()
    a.stop_deleter(signal.SIGKILL)
    a.lighttpd.send_signal(signal.SIGKILL)
    for pid in a.children_left():
        os.kill(pid, signal.SIGKILL)
    calls_before = len(bot.requests("deleteMessage") + bot.requests("deleteMessages"))
    b.start_deleter()

    try:
        wait_until(lambda: redis.cli("ZCARD", "shared:pending:due") == "0",
                   lease_s + call_s + 15 * SLOW, "host B to delete everything", interval=0.2)
    except AssertionError:
        print("NOW", time.time(), redis.cli("ZRANGE", "shared:pending:due", 0, -1, "WITHSCORES"))
        print(b.log_text()[-3000:])
        raise
    done = time.time()
    assert done >= claimed_at + lease_s - call_s, "taken over before the lease ran out"
    # the lease, then B's own call
    assert done <= last_due + lease_s + call_s + 1 + 3 * SLOW, "later than delete_at + the lease"
    assert len(bot.requests("deleteMessage") + bot.requests("deleteMessages")) > calls_before, \
        "host B made the calls"
    for m in bot.messages():
        assert m["deleted_at"] is not None, m
        assert m["deleted_at"] >= m["sent_at"] + 5.0 - 0.001, "deleted early"


def test_redis_unresponsive_for_5s_fails_closed_then_recovers_losing_nothing(make_gateway, redis,
                                                                             bot):
    [gw] = stacks(make_gateway, redis, n=1)
    r = gw.send_otp({"chat_id": "6001", "otp": "1111", "expire_seconds": 10})
    assert r.status == 200
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        r2 = gw.send_otp({"chat_id": "6002", "otp": "2222"})
        health = gw.get("/health")
        left = 5 - (time.monotonic() - stopped)
        if left > 0:
            time.sleep(left)  # the outage itself, not a synchronisation
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    assert r2.status == 503, r2
    assert r2.headers["Retry-After"]
    assert bot.messages("6002") == [], "nothing is sent while the store is out of reach"
    assert health.status == 503 and health.json["checks"]["database"] == "unreachable", health
    wait_until(lambda: gw.send_otp({"chat_id": "6003", "otp": "3333"}).status == 200,
               10 * SLOW, "sends to work again")
    logs = [l["message"] for l in gw.log_lines() if "Redis" in l.get("message", "")]
    assert any("unreachable" in m for m in logs), logs
    # the OTP sent before the outage is still deleted, on time
    mid = r.json["message_id"]
    gone = wait_until(lambda: bot.messages("6001")[0]["deleted_at"], 15 * SLOW, "its deletion")
    assert gone >= parse_iso(r.json["delete_at"])
    assert bot.messages("6001")[0]["message_id"] == mid


def test_redis_killed_and_restarted_with_appendonly_loses_nothing_pending(make_gateway, redis,
                                                                           bot):
    [gw] = stacks(make_gateway, redis, n=1, unix=False)
    answers = [gw.send_otp({"chat_id": str(6100 + i), "otp": "1234", "expire_seconds": 15})
               for i in range(5)]
    assert [r.status for r in answers] == [200] * 5
    redis.stop(signal.SIGKILL)  # no shutdown save: only the append-only file keeps them
    r = gw.send_otp({"chat_id": "6199", "otp": "1234"})
    assert r.status == 503, r
    redis.start()
    assert redis.cli("ZCARD", "shared:pending:due") == "5"
    wait_until(lambda: all(bot.messages(str(6100 + i))[0]["deleted_at"] for i in range(5)),
               25 * SLOW, "the deletions after the restart", interval=0.2)
    for i, a in enumerate(answers):
        assert bot.messages(str(6100 + i))[0]["deleted_at"] >= parse_iso(a.json["delete_at"])
    assert bot.messages("6199") == []


def test_the_two_host_example_runs_with_its_password_from_a_file(make_gateway, bot, workdir):
    """conf/two-hosts: its redis.conf (address and directory moved to the test's), a host's
    settings file, and the password read from OTP_REDIS_PASSWORD_FILE, never logged."""
    from conftest import BUILD, ROOT, free_port, stop_process
    import subprocess
    conf = (ROOT / "conf/two-hosts/redis.conf").read_text()
    password = next(l.split()[1] for l in conf.splitlines() if l.startswith("requirepass "))
    d = f"{workdir}/redis-example"
    os.mkdir(d)
    port = free_port()
    server = subprocess.Popen(["redis-server", str(ROOT / "conf/two-hosts/redis.conf"),
                               "--bind", "127.0.0.1", "--port", str(port), "--dir", d,
                               "--logfile", f"{d}/redis.log"], start_new_session=True)
    try:
        def up():
            r = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a",
                                password, "CONFIG", "GET", "maxmemory-policy"],
                               capture_output=True, text=True)
            return r.returncode == 0 and "noeviction" in r.stdout
        wait_until(up, 10, "the example's redis-server")
        pw_file = f"{workdir}/redis-password"
        with open(pw_file, "w") as f:
            f.write(password + "\n")
        env = {"OTP_ENV_FILE": str(ROOT / "conf/two-hosts/host-a.env"),
               "OTP_STORE": f"redis://127.0.0.1:{port}/0", "OTP_REDIS_PASSWORD_FILE": pw_file,
               "HOST": "127.0.0.1"}
        gw = make_gateway(env=env)
        r = gw.send_otp({"chat_id": "4242", "otp": "7777"})
        assert r.status == 200, r
        keys = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a", password,
                               "--scan", "--pattern", "otp:*"], capture_output=True, text=True)
        assert "otp:pending:due" in keys.stdout.split()
        assert password not in gw.log_text()
        # a wrong password is refused at start, with a reason that does not quote it
        with open(pw_file, "w") as f:
            f.write("wrong-" + password)
        out = subprocess.run([str(BUILD / "otp-deleter")], env={**gw.env,
                             "OTP_REDIS_PASSWORD_FILE": pw_file}, capture_output=True,
                             text=True, timeout=20)
        assert out.returncode != 0
        assert "AUTH" in out.stderr and password not in out.stderr, out.stderr
        # a password too long to hold is refused by name, never cut and tried
        with open(pw_file, "w") as f:
            f.write("x" * 1024 + "\n")
        out = subprocess.run([str(BUILD / "otp-deleter")], env={**gw.env,
                             "OTP_REDIS_PASSWORD_FILE": pw_file}, capture_output=True,
                             text=True, timeout=20)
        assert out.returncode != 0
        assert "longer than 1023 bytes" in out.stderr, out.stderr
    finally:
        stop_process(server)


def test_scripts_flushed_from_the_server_are_loaded_again(make_gateway, redis, bot):
    """EVALSHA answers NOSCRIPT after SCRIPT FLUSH (or a failover to a server that never saw
    them): the script is loaded again and the call runs, once."""
    [gw] = stacks(make_gateway, redis, n=1)
    assert gw.send_otp({"chat_id": "6300", "otp": "1234", "expire_seconds": 5}).status == 200
    assert redis.cli("SCRIPT", "FLUSH") == "OK"
    r = gw.send_otp({"chat_id": "6301", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200, r
    assert len(bot.messages("6301")) == 1
    wait_until(lambda: all(m["deleted_at"] for c in ("6300", "6301") for m in bot.messages(c)),
               10 * SLOW, "both deletions")
    assert redis.cli("ZCARD", "shared:pending:due") == "0"
