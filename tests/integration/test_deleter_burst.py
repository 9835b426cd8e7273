

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


def test_a_too_old_message_in_a_batch_is_given_up_alone_and_the_others_deleted(make_gateway, bot):
    """deleteMessages refused for one message of the batch deletes none: otp-deleter asks about
    each alone, deletes the others and gives up only the one Telegram refuses alone."""
    gw = make_gateway(env=ENV)
    due_s = send_due_together(gw, ["8200"] * 4, 2)
    ids = sorted(m["message_id"] for m in bot.messages("8200"))
    bot.backdate("8200", ids[1], 49 * 3600)
    wait_until(lambda: gw.db_rows("SELECT count(*) FROM pending_deletions") == [(0,)],
               due_s - time.time() + 10 * SLOW, "every row settled")
    gone = {m["message_id"]: m["deleted_at"] for m in bot.messages("8200")}
    assert [i for i in ids if gone[i] is None] == [ids[1]]
    assert min(d for d in gone.values() if d is not None) >= due_s
    batches = [c for c in bot.requests("deleteMessages") if c["params"]["chat_id"] == "8200"]
    assert batches and all(c["status"] == 400 for c in batches), "the batch was tried, and refused"
    assert "message cannot be deleted: row removed" in gw.log_text()
