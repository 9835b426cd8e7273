"""A Redis that answers what it should not: a whole stack (lighttpd + otp-fcgi + otp-deleter)
whose store is a real redis-server behind tests/integration/redis_liar.py, which replaces the
replies of chosen calls with wrong shapes, wrong types, huge arrays, replies trickled slower than
the command deadline, and connections closed half way. Every such send answers 503 (never 500),
nothing reaches the emulator, the processes live on (ASan clean under `make asan`), each kind of
wrong reply is logged once, and sends work again as soon as the server tells the truth."""
import re

import pytest

from conftest import ROOT, SLOW, RedisServer
from redis_liar import CLOSE, SLOW as TRICKLE, RedisLiar

# the issue's reply: first element 0 and more elements than the rules can explain
ISSUE_SHAPE = b"*9\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"

LIES = {
    "first element 0 with extra elements": ("rate_take", None, ISSUE_SHAPE),
    "first element nil": ("rate_take", None, b"*6\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"),
    "first element a string": ("rate_take", None,
                               b"*6\r\n$2\r\nno\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"),
    "admitted but no events": ("rate_take", None, b"*6\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"),
    "rule out of range": ("rate_take", None, b"*6\r\n:7\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"),
    "negative instant": ("rate_take", None,
                         b"*10\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:-5\r\n:0\r\n:1\r\n:1\r\n:2\r\n:1\r\n"),
    "a status instead of an array": ("rate_take", None, b"+OK\r\n"),
    "an integer instead of an array": ("rate_take", None, b":1\r\n"),
    "nested arrays": ("rate_take", None, b"*1\r\n*1\r\n*1\r\n*0\r\n"),
    # a send reads otp-deleter's heartbeat in its rate_take: {0, beat, found, 0, 0, now} refuses
    "heartbeat not a number": ("rate_take", None,
                               b"*6\r\n:0\r\n$3\r\nabc\r\n:1\r\n:0\r\n:0\r\n:0\r\n"),
    "heartbeat nil": ("rate_take", None, b"*6\r\n:0\r\n$-1\r\n:1\r\n:0\r\n:0\r\n:0\r\n"),
    "huge array header": ("rate_take", CLOSE, b"*2000000000\r\n:1\r\n"),
    "huge array": ("rate_take", None, b"*100000\r\n" + b":1\r\n" * 100000),
    "huge string": ("pause_get", None, b"$10000000\r\n" + b"x" * 10000000 + b"\r\n"),
    "pause of the wrong shape": ("pause_get", None, b"*2\r\n:1\r\n:1\r\n"),
    "closed mid-reply": ("rate_take", CLOSE, b"*10\r\n:-1\r\n:0\r\n"),
    "closed mid-string": ("rate_take", CLOSE, b"*6\r\n:0\r\n$13\r\n17000"),
    "slow reply": ("rate_take", TRICKLE,
                   b"*10\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:1\r\n:1\r\n:1\r\n:1\r\n:2\r\n:1\r\n"),
}


@pytest.fixture
def liar(workdir):
    server = RedisServer(f"{workdir}/redis")
    proxy = RedisLiar(server.sock)
    yield proxy
    proxy.stop()
    server.stop()


# A send reads Telegram's pause again only after waiting for its turn (its admission read it):
# sends queued 1 s apart make every send after the first read it.
PACED = {"TELEGRAM_MAX_SENDS_PER_SECOND": "1", "TELEGRAM_SEND_WAIT_MS": "3000"}


@pytest.fixture
def stack(request, make_gateway, liar):
    callspec = getattr(request.node, "callspec", None)
    lie = callspec.params.get("lie") if callspec else None
    env = {"OTP_STORE": liar.url("liar:")}
    if lie is not None and LIES[lie][0] == "pause_get":
        env.update(PACED)
    return make_gateway(env=env)


def pids_of(gw):
    return set(gw.children_left())


@pytest.mark.parametrize("lie", list(LIES))
def test_a_wrong_reply_answers_503_sends_nothing_and_crashes_nothing(stack, liar, bot, lie):
    call, mode, data = LIES[lie]
    assert stack.send_otp({"chat_id": "4242", "otp": "1234"}).status == 200
    before = pids_of(stack)
    assert before
    liar.lie(call, mode, data) if mode else liar.lie(call, data)
    for i in range(3):
        if call == "pause_get":
            # a send reads the pause only when it waits for its turn: a send told the truth
            # just before takes the turn, so that the checked one waits (however slow the build)
            liar.truth()
            assert stack.send_otp({"chat_id": f"424{3 + i}", "otp": "1234"}).status == 200
            liar.lie(call, mode, data) if mode else liar.lie(call, data)
        r = stack.send_otp({"chat_id": "4343", "otp": "5678"})
        assert r.status == 503, (lie, r.status, r.text)
        assert r.json["success"] is False and "store" in r.json["detail"], r.json
    assert liar.lies_told.get(call, 0) >= 1
    assert bot.messages("4343") == []
    # the same processes answer: none crashed and was respawned
    assert pids_of(stack) == before
    liar.truth()
    r = stack.send_otp({"chat_id": "4444", "otp": "9012"})
    assert r.status == 200, r.text
    assert len(bot.messages("4444")) == 1
    # a wrong reply is logged once per kind of call and process, however often it comes
    once = [(line["pid"], line["message"]) for line in stack.log_lines()
            if "unexpected reply from Redis" in line.get("message", "")
            and "logged once" in line.get("message", "")]
    if mode is None:
        assert once and len(once) == len(set(once)), once


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_slow_reply_is_cut_at_the_command_deadline(stack, liar, bot):
    """A server that trickles its reply cannot hold a request: 503 within the 2 s deadline."""
    import time
    call, mode, data = LIES["slow reply"]
    liar.lie(call, mode, data)
    t0 = time.monotonic()
    r = stack.send_otp({"chat_id": "4545", "otp": "1234"})
    took = time.monotonic() - t0
    assert r.status == 503, r.text
    assert took < 2 + 2 * SLOW, took  # the deadline (2 s), plus a bound for the rest
    assert bot.messages("4545") == []


def test_every_lua_script_loads_on_a_real_server(stack, liar):
    """Each script of lib/redis/ goes through SCRIPT LOAD on a real redis-server, which compiles it
    and answers its SHA-1 (a script that does not compile gets an error instead)."""
    assert stack.send_otp({"chat_id": "4646", "otp": "1234"}).status == 200
    files = {p.stem for p in (ROOT / "lib" / "redis").glob("*.lua")}
    assert files, "no script found under lib/redis/"
    loaded = dict(liar.scripts)
    assert set(loaded.values()) == files, (sorted(files), sorted(loaded.values()))
    assert all(re.fullmatch(rb"[0-9a-f]{40}", sha) for sha in loaded), list(loaded)
