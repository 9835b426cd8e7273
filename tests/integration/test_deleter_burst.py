"""A burst of deletions: many messages due in the same second are all deleted within 2 s of
their delete_at, none early, by deleteMessages per chat and calls in flight that grow with the
backlog; afterwards otp-deleter keeps no more connections than DELETER_CONCURRENCY.

The rows are written into pending_deletions directly (the documented schema), all with one
delete_at, so that they fall due in the same millisecond; the messages are sent to the emulator
first, as the gateway would have."""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, wait_until

pytestmark = pytest.mark.sqlite_only

DEADLINE = 2.0 * SLOW        # the promise for a burst: each message within 2 s of its delete_at
LATENCY_MS = 200             # the Bot API's answer to deleteMessage(s)
STEADY = 16                  # DELETER_CONCURRENCY's default


def send_due_together(gw, bot, chats, in_s):
    """Sends one message to each chat of chats (a chat may come back) through the emulator and
    records them all due in_s seconds from now. Returns that instant (epoch seconds)."""
    with ThreadPoolExecutor(16) as ex:
        mids = list(ex.map(lambda c: bot.bot_call("sendMessage", {"chat_id": c, "text": "x"})
                           ["result"]["message_id"], chats))
    now_ms = int(time.time() * 1000)
    due_ms = now_ms + int(in_s * 1000)
    gw.db_execute_many(
        "INSERT INTO pending_deletions (chat_id, chat_key, message_id, delete_at_ms, next_try_ms, "
        "attempts, created_at_ms) VALUES (?1, ?1, ?2, ?3, ?4, 0, ?5)",
        [(c, m, due_ms, due_ms, now_ms) for c, m in zip(chats, mids)])
    return due_ms / 1000.0


def connections_to(pid, port):
    """The established TCP connections of process pid to 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                n += 1
    return n


def assert_burst_on_time(bot, chats, due_s):
    """Every message of chats is deleted, none before due_s, none later than DEADLINE after."""
    wanted = set(chats)
    gone = [m["deleted_at"] for m in bot.messages() if m["chat_id"] in wanted]
    assert len(gone) == len(chats) and all(d is not None for d in gone), "all deleted"
    early = [d for d in gone if d < due_s]
    assert not early, f"{len(early)} deleted before their delete_at"
    lags = sorted(d - due_s for d in gone)
    assert lags[-1] <= DEADLINE, \
        f"p50 {lags[len(lags) // 2]:.2f} s, last {lags[-1]:.2f} s after delete_at"


def test_emulator_deletemessages_skips_ids_not_found_and_refuses_all_for_one_too_old(bot):
    """As the Bot API server: ids not found are skipped (True even when none is found); one
    message that can't be deleted fails the whole call and nothing is deleted."""
    def send():
        return bot.bot_call("sendMessage", {"chat_id": "8100", "text": "x"})["result"]["message_id"]
    a, b, old = send(), send(), send()
    assert bot.bot_call("deleteMessages", {"chat_id": "8100", "message_ids": [a, 999999]}) == \
        {"ok": True, "result": True}
    assert bot.bot_call("deleteMessages", {"chat_id": "8100", "message_ids": [a, 999999]}) == \
        {"ok": True, "result": True}, "none found is still True"
    bot.backdate("8100", old, 49 * 3600)
    refused = bot.bot_call("deleteMessages", {"chat_id": "8100", "message_ids": [b, old]})
    assert refused["ok"] is False and refused["error_code"] == 400
    assert refused["description"] == "Bad Request: message can't be deleted for everyone"
    left = {m["message_id"]: m["deleted_at"] for m in bot.messages("8100")}
    assert left[b] is None and left[old] is None, "nothing deleted by a refused call"
    assert left[a] is not None


def test_a_too_old_message_in_a_batch_is_given_up_alone_and_the_others_deleted(gateway, bot):
    """deleteMessages refused for one message of the batch deletes none: otp-deleter asks about
    each alone, deletes the others and gives up only the one Telegram refuses alone."""
    due_s = send_due_together(gateway, bot, ["8200"] * 4, 2)
    ids = sorted(m["message_id"] for m in bot.messages("8200"))
    bot.backdate("8200", ids[1], 49 * 3600)
    wait_until(lambda: gateway.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)],
               due_s - time.time() + 10 * SLOW, "every row settled")
    gone = {m["message_id"]: m["deleted_at"] for m in bot.messages("8200")}
    assert [i for i in ids if gone[i] is None] == [ids[1]]
    assert min(d for d in gone.values() if d is not None) >= due_s
    batches = [c for c in bot.requests("deleteMessages") if c["params"]["chat_id"] == "8200"]
    assert batches and all(c["status"] == 400 for c in batches), "the batch was tried, and refused"
    assert "message cannot be deleted: row removed" in gateway.log_text()


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_thousand_due_together_in_200_chats_are_deleted_within_2_s(gateway, bot):
    """200 chats x 5 messages due in the same millisecond, the Bot API answering in 200 ms: one
    deleteMessages per chat, more calls in flight than the steady pool while the backlog lasts,
    each message gone within 2 s of its delete_at and none early; the connections beyond the
    steady pool are closed afterwards."""
    chats = [str(9000 + c) for c in range(200) for _ in range(5)]
    due_s = send_due_together(gateway, bot, chats, 3)
    bot.config(method_latency_ms={"deleteMessage": LATENCY_MS, "deleteMessages": LATENCY_MS})
    wait_until(lambda: gateway.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)],
               due_s - time.time() + 10 * DEADLINE, "every row settled")
    assert_burst_on_time(bot, chats, due_s)
    calls = [c for c in bot.requests("deleteMessages") if c["params"]["chat_id"] in set(chats)]
    assert len(calls) == 200 and all(c["status"] == 200 for c in calls), "one call per chat"
    assert len({c["client_port"] for c in calls}) > STEADY, "the calls in flight grew"
    wait_until(lambda: connections_to(gateway.deleter.pid, bot.port) <= STEADY, 5 * SLOW,
               f"otp-deleter back to at most {STEADY} connections")


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_thousand_due_together_in_one_chat_are_deleted_within_2_s(gateway, bot):
    """1,000 messages of one chat due together: deleteMessages with 100 ids per call."""
    chats = ["9500"] * 1000
    due_s = send_due_together(gateway, bot, chats, 3)
    bot.config(method_latency_ms={"deleteMessage": LATENCY_MS, "deleteMessages": LATENCY_MS})
    wait_until(lambda: gateway.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)],
               due_s - time.time() + 10 * DEADLINE, "every row settled")
    assert_burst_on_time(bot, chats, due_s)
    calls = [c for c in bot.requests("deleteMessages") if c["params"]["chat_id"] == "9500"]
    assert len(calls) == 10 and all(len(c["params"]["message_ids"]) == 100 for c in calls)
