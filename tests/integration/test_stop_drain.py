"""A planned stop loses no deletion: on SIGTERM or SIGINT otp-deleter keeps deleting each
pending row at its delete_at, then exits 0; when its stop timeout (DELETER_STOP_TIMEOUT_SECONDS)
is shorter than that wait, it deletes what is left early, before the timeout ends, and says how
many. A restart under traffic deletes nothing early and leaves nothing behind. Times are the
emulator's (when each call arrived); the suite's Redis pass runs every test against Redis too."""
import random
import signal
import threading
import time

import pytest

from conftest import BUILD, SLOW, parse_iso, wait_until

# every test times a stop against its timeout: run alone (tests/run-tests.sh)
pytestmark = pytest.mark.serial

# a deletion is due within a second of its delete_at (test_deleter.py's promise), and so is the
# exit once the last row the stop waits for is gone
DEADLINE = 1.0 * SLOW
# the product's default: MAX_EXPIRE_SECONDS + 10 (the harness sets 0 for its teardown)
DEFAULT_TIMEOUT = {"DELETER_STOP_TIMEOUT_SECONDS": None}


def send(gw, bot, chat_id, expire):
    """Sends a code; returns what the deletion must respect: the answered delete_at and the
    emulator's answer time + expire (the stored instant is later than both)."""
    r = gw.send_otp({"chat_id": chat_id, "otp": "4321", "expire_seconds": expire})
    assert r.status == 200, r
    [call] = [c for c in bot.requests("sendMessage") if str(c["params"].get("chat_id")) == chat_id]
    return {"chat": chat_id, "mid": r.json["message_id"], "expire": expire,
            "promised": parse_iso(r.json["delete_at"]), "answered": call["answered_at"]}


def deleted_at(bot, chat_id, mid):
    for m in bot.messages(chat_id):
        if m["message_id"] == mid:
            return m["deleted_at"]
    raise AssertionError(f"message {mid} not in chat {chat_id}")


def wait_exit(proc, timeout):
    """Polls until proc exits; returns (exit code, time.time() when it was seen gone)."""
    wait_until(lambda: proc.poll() is not None, timeout, "otp-deleter to exit", interval=0.01)
    return proc.returncode, time.time()


def deleter_lines(gw, message_part):
    return [line for line in gw.log_lines() if message_part in line.get("message", "")]


def test_sigterm_deletes_each_pending_row_at_its_delete_at_then_exits_0(make_gateway, bot):
    gw = make_gateway(env={**DEFAULT_TIMEOUT, "MIN_EXPIRE_SECONDS": "1"})
    rows = [send(gw, bot, "7001", 3), send(gw, bot, "7002", 8)]
    gw.deleter.send_signal(signal.SIGTERM)
    # the heartbeat goes on while it drains: sends are still accepted
    first = wait_until(lambda: deleted_at(bot, "7001", rows[0]["mid"]), 3 + 3 * DEADLINE,
                       "the first deletion")
    assert gw.deleter.poll() is None, "exited before the second row was due"
    assert gw.get("/health").status == 200, "the heartbeat stops before the drain ends"
    code, gone_at = wait_exit(gw.deleter, 8 + 3 * DEADLINE)
    assert code == 0
    last = 0.0
    for row in rows:
        gone = deleted_at(bot, row["chat"], row["mid"])
        assert gone is not None, f"{row} left undeleted at exit"
        assert gone >= row["promised"], "never before the answered delete_at"
        assert gone >= row["answered"] + row["expire"], \
            f"deleted {row['answered'] + row['expire'] - gone:.3f} s early"
        late = gone - row["answered"] - row["expire"]
        assert late <= DEADLINE, f"deleted {late:.3f} s after delete_at (bound {DEADLINE:.2f} s)"
        last = max(last, gone)
    assert first < last
    assert gone_at - last <= DEADLINE, f"exited {gone_at - last:.3f} s after the last deletion"
    assert gw.db_rows() == []
    [stopping] = [line for line in gw.log_lines() if line.get("message") == "otp-deleter stopping"]
    assert stopping["deleted_early"] == 0 and stopping["pending_left"] == 0, stopping
    assert not deleter_lines(gw, "deleted before their delete_at")


def test_stop_timeout_shorter_than_the_wait_deletes_the_rest_early(make_gateway, bot):
    # 6 s to stop, Bot API timeout 2 s: what is left is deleted early from 3 s on
    gw = make_gateway(env={"DELETER_STOP_TIMEOUT_SECONDS": "6", "MIN_EXPIRE_SECONDS": "1",
                           "TELEGRAM_TIMEOUT_SECONDS": "2"})
    soon, later = send(gw, bot, "7101", 2), send(gw, bot, "7102", 30)
    signalled = time.time()
    gw.deleter.send_signal(signal.SIGTERM)
    code, gone_at = wait_exit(gw.deleter, 6 + 3 * DEADLINE)
    assert code == 0
    assert gone_at - signalled <= 6 + DEADLINE, "the stop timeout is a bound"
    gone = deleted_at(bot, "7101", soon["mid"])
    assert gone is not None and gone >= soon["answered"] + soon["expire"], "due in time: on time"
    early = deleted_at(bot, "7102", later["mid"])
    assert early is not None, ("the row that would fall due after the timeout is deleted early",
                               [l for l in gw.log_lines() if "delet" in l.get("message", "")][-8:])
    assert signalled + 3 - 0.05 <= early <= signalled + 6, \
        f"deleted early at +{early - signalled:.2f} s: from 3 s on, before the 6 s timeout"
    assert gw.db_rows() == []
    [line] = deleter_lines(gw, "deleted before their delete_at")
    assert line["level"] == "WARNING" and line["deleted_early"] == 1, line
    assert line["stop_timeout_seconds"] == 6


def test_restart_under_traffic_deletes_nothing_early_and_leaves_nothing(make_gateway, bot):
    """`systemctl restart otp-deleter` while codes are sent: the old deleter drains the rows
    pending at its stop, the next one (started once it exited) takes the newer ones."""
    gw = make_gateway(env={**DEFAULT_TIMEOUT, "MIN_EXPIRE_SECONDS": "1"})
    sent, answers, stop = [], [], threading.Event()
    rnd = random.Random(22)

    def traffic():
        i = 0
        while not stop.is_set():
            expire = rnd.randint(2, 6)
            r = gw.send_otp({"chat_id": str(7200 + i), "otp": "1234", "expire_seconds": expire})
            answers.append(r.status)
            if r.status == 200:
                sent.append((str(7200 + i), r.json["message_id"], expire,
                             parse_iso(r.json["delete_at"])))
            i += 1
            stop.wait(0.1)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_until(lambda: len(sent) >= 10, 10 * SLOW, "some codes pending")
        old = gw.deleter
        signalled = time.time()
        old.send_signal(signal.SIGTERM)
        code, gone_at = wait_exit(old, 6 + 3 * DEADLINE)
        assert code == 0
        gw.start_deleter()  # as systemd's restart does: the next one once the old one is gone
        restarted = len(sent)
        wait_until(lambda: len(sent) >= restarted + 15, 20 * SLOW, "more codes after the restart")
    finally:
        stop.set()
        t.join(30)
    assert set(answers) == {200}, f"sends refused around the restart: {answers}"
    wait_until(lambda: gw.db_rows() == [], 6 + 5 * DEADLINE, "every row to go")
    calls = {str(c["params"].get("chat_id")): c["answered_at"] for c in bot.requests("sendMessage")}
    for chat, mid, expire, promised in sent:
        gone = deleted_at(bot, chat, mid)
        assert gone is not None, f"message {mid} in {chat} never deleted"
        assert gone >= promised, "never before the answered delete_at"
        assert gone >= calls[chat] + expire, f"{chat}: deleted {calls[chat] + expire - gone:.3f} s early"
        assert gone - calls[chat] - expire <= DEADLINE, \
            f"{chat}: deleted {gone - calls[chat] - expire:.3f} s late (bound {DEADLINE:.2f} s)"
    assert not deleter_lines(gw, "deleted before their delete_at")
    stopping = [line for line in gw.log_lines() if line.get("message") == "otp-deleter stopping"]
    assert len(stopping) == 1 and stopping[0]["deleted_early"] == 0, stopping
    assert stopping[0]["pending_left"] > 0, "newer rows were handed to the next deleter"
    assert gone_at - signalled <= 6 + 2 * DEADLINE, "the old one waited for its rows only"


def test_a_second_sigint_ends_the_drain_at_once_and_keeps_the_row(make_gateway, bot):
    gw = make_gateway(env=DEFAULT_TIMEOUT)
    row = send(gw, bot, "7301", 60)
    gw.deleter.send_signal(signal.SIGINT)
    wait_until(lambda: deleter_lines(gw, "deleting the pending messages"), 5 * SLOW, "the drain")
    gw.deleter.send_signal(signal.SIGINT)  # Ctrl-C again
    code, _ = wait_exit(gw.deleter, 3 * SLOW)
    assert code == 0
    assert deleted_at(bot, "7301", row["mid"]) is None
    assert [r[:2] for r in gw.db_rows()] == [("7301", row["mid"])], "left for the next start"
    [line] = deleter_lines(gw, "the stop ended with messages still to delete")
    assert line["level"] == "ERROR" and line["pending"] == 1 and line["ended_by"] == "second SIGINT"


def test_drain_option_takes_over_from_a_cron_run_and_deletes_on_time(make_gateway, bot):
    """Shared hosting's stop: the cron line removed, `otp-deleter --drain` waits for the last
    --run-for run to hand over, deletes what is pending at its time, and exits."""
    gw = make_gateway(deleter=False, env={**DEFAULT_TIMEOUT, "MIN_EXPIRE_SECONDS": "1"})
    cron = gw._spawn("deleter-cron", [str(BUILD / "otp-deleter"), "--run-for", "2"])
    wait_until(gw.healthy, 5 * SLOW, "the cron run's heartbeat")
    row = send(gw, bot, "7401", 4)
    drain = gw._spawn("deleter-drain", [str(BUILD / "otp-deleter"), "--drain"])
    try:
        assert wait_exit(cron, 5 * SLOW)[0] == 0
        code, gone_at = wait_exit(drain, 4 + 3 * DEADLINE)
        assert code == 0
    finally:
        for p in (cron, drain):
            if p.poll() is None:
                p.kill()
                p.wait()
    gone = deleted_at(bot, "7401", row["mid"])
    assert gone is not None and gone >= row["answered"] + row["expire"]
    assert gone - row["answered"] - row["expire"] <= DEADLINE
    assert gw.db_rows() == []


def test_rows_telegram_refuses_to_the_end_stay_for_the_next_start(make_gateway, bot):
    """The Bot API is down for the whole stop: the timeout still bounds it, the row stays in the
    store (not lost), and an ERROR line says so."""
    gw = make_gateway(env={"DELETER_STOP_TIMEOUT_SECONDS": "4", "MIN_EXPIRE_SECONDS": "1",
                           "TELEGRAM_TIMEOUT_SECONDS": "1"})
    row = send(gw, bot, "7501", 1)
    bot.config(down_s=30)
    signalled = time.time()
    gw.deleter.send_signal(signal.SIGTERM)
    code, gone_at = wait_exit(gw.deleter, 4 + 3 * DEADLINE)
    bot.config(down_s=0)
    assert code == 0
    assert gone_at - signalled <= 4 + DEADLINE, "the stop timeout is a bound"
    assert deleted_at(bot, "7501", row["mid"]) is None
    assert [r[:2] for r in gw.db_rows()] == [("7501", row["mid"])], "kept for the next start"
    [line] = deleter_lines(gw, "the stop ended with messages still to delete")
    assert line["level"] == "ERROR" and line["ended_by"] == "stop timeout" and line["pending"] == 1
    # the next otp-deleter deletes it
    gw.start_deleter()
    wait_until(lambda: deleted_at(bot, "7501", row["mid"]), 5 * SLOW, "the deletion after restart")
