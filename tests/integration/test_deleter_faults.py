"""otp-deleter under load and faults (issue #3): concurrent and batched, retried, crash-safe.

Messages are put straight into the emulator and their rows straight into the database, so that
many of them fall due at the same instant, as at a login storm's peak."""
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import BUILD, SLOW, wait_until

# these tests write rows into the SQLite file directly, or rely on its lock file
pytestmark = pytest.mark.sqlite_only


def make_due(gw, bot, chats, per_chat, due_in_s):
    """Sends per_chat messages to each of `chats` chats through the emulator and records them
    all as due at the same instant. Returns (due_at_seconds, [(chat, message_id)])."""
    made = []
    for c in range(chats):
        chat = str(5_000_000 + c)
        for _ in range(per_chat):
            reply = bot.bot_call("sendMessage", {"chat_id": chat, "text": "x"})
            made.append((chat, reply["result"]["message_id"]))
    due_ms = int((time.time() + due_in_s) * 1000)
    con = sqlite3.connect(gw.db_path, timeout=10)
    with con:
        con.executemany(
            "INSERT INTO pending_deletions (chat_id, chat_key, message_id, delete_at_ms, next_try_ms,"
            " created_at_ms) VALUES (?1, ?1, ?2, ?3, ?3, ?3)", [(c, m, due_ms) for c, m in made])
    con.close()
    return due_ms / 1000.0, made


def deletion_times(bot):
    return [m["deleted_at"] for m in bot.messages() if m["deleted_at"] is not None]


def all_deleted(bot, n):
    times = deletion_times(bot)
    return times if len(times) == n else None


def test_thousand_messages_due_at_once_are_deleted_within_seconds(make_gateway, bot):
    gw = make_gateway()
    due, made = make_due(gw, bot, chats=100, per_chat=10, due_in_s=3)
    bot.config(latency_ms=200)
    # 100 chats -> 100 deleteMessages calls; 16 at a time at 200 ms each is ~1.3 s, plus up to
    # 250 ms before the deleter looks: 3 s leaves room for a loaded machine.
    bound = 3.0 * SLOW
    times = wait_until(lambda: all_deleted(bot, 1000), 3 + bound + 10, "1,000 deletions")
    assert min(times) >= due, "nothing is deleted before its delete_at"
    assert max(times) <= due + bound, f"the last deletion came {max(times) - due:.2f} s after delete_at"
    calls = bot.requests("deleteMessages")
    assert 100 <= len(calls) <= 110, "several due messages of one chat go in one call"
    wait_until(lambda: gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)], 5 * SLOW, "rows to go")


def test_flood_control_is_waited_out_by_every_call(make_gateway, bot):
    gw = make_gateway()
    due, made = make_due(gw, bot, chats=20, per_chat=1, due_in_s=1)
    bot.config(flood={"retry_after": 2, "duration_s": 3}, flood_methods=["deleteMessage", "deleteMessages"])
    times = wait_until(lambda: all_deleted(bot, 20), 20 * SLOW, "the deletions after the flood")
    assert min(times) >= due
    calls = bot.requests("deleteMessage")
    floods = [c for c in calls if c["status"] == 429]
    assert floods, "the emulator never answered 429: the test did not test anything"
    for f in floods:
        # calls already under way when the 429 came may land; nothing may start after it
        # until retry_after has passed
        early = [c for c in calls if f["answered_at"] + 0.1 < c["at"] < f["answered_at"] + 2 - 0.05]
        assert not early, f"{len(early)} calls within retry_after of a 429"


def test_deletions_resume_after_the_api_was_down_for_10_s(make_gateway, bot):
    gw = make_gateway()
    due, made = make_due(gw, bot, chats=5, per_chat=2, due_in_s=1)
    bot.config(down_s=10)
    down_until = time.time() + 10
    times = wait_until(lambda: all_deleted(bot, 10), 40 * SLOW, "deletions after the outage", interval=0.2)
    assert min(times) >= down_until - 0.1
    assert "deletion failed: will retry" in gw.log_text()
    wait_until(lambda: gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)], 5 * SLOW, "rows to go")


def test_sigkill_mid_batch_then_restart_deletes_everything_without_errors(make_gateway, bot):
    gw = make_gateway()
    due, made = make_due(gw, bot, chats=200, per_chat=1, due_in_s=1)
    bot.config(latency_ms=500)
    wait_until(lambda: len(bot.requests("deleteMessage")) >= 10, 10 * SLOW, "deletions under way")
    gw.stop_deleter(signal.SIGKILL)
    gw.start_deleter()
    times = wait_until(lambda: all_deleted(bot, 200), 30 * SLOW, "every deletion after the restart")
    assert min(times) >= due
    wait_until(lambda: gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)], 10 * SLOW, "rows to go")
    logs = gw.log_text()
    assert '"level":"ERROR"' not in logs, "a repeated deletion is not an error"


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_sigterm_abandons_calls_within_seconds_and_keeps_their_rows(make_gateway, bot):
    gw = make_gateway(env={"TELEGRAM_TIMEOUT_SECONDS": "2"})
    due, made = make_due(gw, bot, chats=3, per_chat=1, due_in_s=1)
    bot.config(hang_s=30)
    wait_until(lambda: bot.requests("deleteMessage"), 5 * SLOW, "calls under way")
    start = time.monotonic()
    gw.deleter.send_signal(signal.SIGTERM)
    assert gw.deleter.wait(timeout=10) == 0
    assert time.monotonic() - start < 4 * SLOW
    assert gw.db_rows("SELECT count(*) FROM pending_deletions") == [(3,)], "unconfirmed rows stay"
    bot.config(hang_s=0)


def test_permanent_failures_are_counted(make_gateway, bot):
    gw = make_gateway()
    due, made = make_due(gw, bot, chats=2, per_chat=1, due_in_s=1)
    bot.config(blocked_chats=[made[0][0]])
    wait_until(lambda: gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)], 10 * SLOW, "rows to go")

    def counted():
        text = gw.get("/metrics").text
        return "otp_delete_failed_total 1" in text and "otp_deleted_total 1" in text
    wait_until(counted, 5 * SLOW, "the counters")


def test_sighup_reopens_the_log_file(make_gateway, bot):
    gw = make_gateway(deleter=False)
    log = gw.dir / "deleter-file.log"
    gw.start_deleter("--log-file", str(log))
    wait_until(gw.healthy, 10 * SLOW, "the deleter's heartbeat")
    wait_until(lambda: log.exists() and "otp-deleter started" in log.read_text(), 5 * SLOW, "the first log")
    rotated = gw.dir / "deleter-file.log.1"
    log.rename(rotated)  # as logrotate does
    gw.deleter.send_signal(signal.SIGHUP)
    r = gw.send_otp({"chat_id": "4242", "otp": "1234", "expire_seconds": 5})
    assert r.status == 200
    wait_until(lambda: log.exists() and "message deleted" in log.read_text(), 10 * SLOW,
               "deletion lines in the reopened log")
    assert "message deleted" not in rotated.read_text()
    assert gw.deleter.poll() is None, "SIGHUP does not stop the deleter"


def test_cron_style_runs_hand_over_without_a_gap(make_gateway, bot):
    """--run-for under cron: the next run waits for the previous one's lock, not exits."""
    gw = make_gateway(deleter=False, env={"DELETER_HEARTBEAT_STALE_SECONDS": "2"})
    first = gw._spawn("deleter-a", [str(BUILD / "otp-deleter"), "--run-for", "2"])
    wait_until(gw.healthy, 5 * SLOW, "the first run's heartbeat")
    second = gw._spawn("deleter-b", [str(BUILD / "otp-deleter"), "--run-for", "4"])
    try:
        assert first.wait(timeout=10) == 0
        # longer than the stale threshold: only the second run can keep the heartbeat fresh
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert gw.get("/health").status == 200, "the heartbeat went stale at the handover"
            time.sleep(0.2)
        assert second.poll() is None, "the next run gave up instead of taking over"
        assert second.wait(timeout=10) == 0
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
                p.wait()
