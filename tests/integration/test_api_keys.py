"""Several API keys (issue: several client apps, one gateway): every key in both headers, 401
with WWW-Authenticate for anything else and nothing sent, /health open, rotation of the keys
file without a restart under load (lighttpd's pool and mod_fcgid's), and a per-key limit
counted across processes."""
import grp
import os
import re
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import FRONTENDS, ROOT, SLOW, frontend_missing, wait_until

UNAUTHORIZED = ("Missing or invalid API key: send it in the X-API-Key header or as "
                "Authorization: Bearer <key>")


def send(gw, chat, headers, expire=60):
    return gw.request("POST", "/send-otp", body={"chat_id": str(chat), "otp": "1234",
                                                  "expire_seconds": expire},
                      headers={"Content-Type": "application/json", **headers})


def x_key(key):
    return {"X-API-Key": key}


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def write_keys(path, text):
    """Replaced whole (a new file renamed over the old), as a deploy tool does."""
    tmp = Path(f"{path}.new")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)  # mod_fcgid's processes run as the web server's user here
    os.replace(tmp, path)


def test_both_keys_work_in_both_headers_and_anything_else_gets_401(make_gateway, bot):
    gw = make_gateway(env={"OTP_API_KEYS": "key-one,key-two"})
    chat = 8100
    for key in ("key-one", "key-two"):
        for header in (x_key, bearer):
            chat += 1
            r = send(gw, chat, header(key))
            assert r.status == 200, (key, header.__name__, r)
    sent = len(bot.requests("sendMessage"))
    assert sent == 4
    for bad in ("key-on", "KEY-ONE", "key-onee", "Key-one", "", "key-one,key-two"):
        for header in (x_key, bearer):
            r = send(gw, 8200, header(bad))
            assert r.status == 401, (bad, r)
            assert r.json == {"detail": UNAUTHORIZED}
            assert r.headers["www-authenticate"] == 'Bearer realm="otp-gateway"'
            assert "key-one" not in r.text
    r = send(gw, 8200, {})
    assert r.status == 401 and r.headers["www-authenticate"] == 'Bearer realm="otp-gateway"'
    assert len(bot.requests("sendMessage")) == sent, "a refused key sends nothing"
    assert gw.get("/health").status == 200
    assert "key-one" not in gw.log_text() and "key-two" not in gw.log_text()


def test_api_key_stays_one_unnamed_key_beside_the_others(make_gateway, bot):
    gw = make_gateway(env={"API_KEY": "legacy-key", "OTP_API_KEYS": "shop:shop-key"})
    assert send(gw, 8301, x_key("legacy-key")).status == 200
    assert send(gw, 8302, bearer("shop-key")).status == 200
    assert send(gw, 8303, x_key("shop")).status == 401
    metrics = gw.get("/metrics").text
    assert 'otp_sent_by_key_total{key="shop"} 1' in metrics, metrics
    assert "legacy-key" not in metrics and "shop-key" not in metrics


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
@pytest.mark.parametrize("frontend", ["lighttpd", "apache-fcgid"])
def test_rotation_under_load_fails_no_valid_key_and_drops_the_old_within_2_s(make_gateway, bot,
                                                                             workdir, frontend):
    if frontend_missing(frontend):
        pytest.skip(frontend_missing(frontend))
    keys = Path(workdir) / "api-keys"
    write_keys(keys, "shop old-shop-key\nforum forum-key limit=1000\n")
    # the send budget (30/s) paces the load; no per-address limit gets in its way
    gw = make_gateway(env={"OTP_API_KEYS_FILE": str(keys), "RATE_LIMIT_PER_IP": "0"},
                      frontend=frontend)
    stop = threading.Event()
    failures, answered = [], []
    valid = {"old-shop-key", "forum-key"}

    def load(n):
        i = 0
        while not stop.is_set():
            i += 1
            key = ["old-shop-key", "new-shop-key", "forum-key"][i % 3]
            must_work = key in valid  # as it stood when the request left
            r = send(gw, 900000 + n * 100000 + i, x_key(key), expire=5)
            if must_work and r.status != 200:
                failures.append((key, r.status, r.text))
            answered.append((time.monotonic(), key, r.status))
    # while both old and new are valid, neither fails: add the new key first
    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        write_keys(keys, "shop old-shop-key\nshop2 new-shop-key\nforum forum-key limit=1000\n")
        time.sleep(2.5)
        valid.add("new-shop-key")  # every process has read the file by now
        valid.discard("old-shop-key")  # from here the old key may fail: only it
        removed_at = time.monotonic()
        write_keys(keys, "shop new-shop-key\nforum forum-key limit=1000\n")
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    late = [a for a in answered if a[1] == "old-shop-key" and a[0] > removed_at + 2 * SLOW
            and a[2] != 401]
    assert not late, f"the removed key still worked 2 s after the change: {late[:3]}"
    # every process has read the new file: the removed key fails on each
    pids = gw.send_pids()
    assert len(pids) >= 2, f"the load reached one process only ({pids})"
    results = []

    def probe():
        results.append(send(gw, 990000 + len(results), x_key("old-shop-key")).status)
    probes = [threading.Thread(target=probe) for _ in range(16)]
    for t in probes:
        t.start()
    for t in probes:
        t.join()
    assert set(results) == {401}, results


def test_per_key_limit_across_processes_answers_429_with_retry_after(make_gateway, bot):
    gw = make_gateway(env={"OTP_API_KEYS": "shop:shop-key,forum:forum-key",
                           "OTP_KEY_LIMIT_PER_MINUTE": "3"})
    results = []

    def one(i):
        results.append(send(gw, 8400 + i, x_key("shop-key")))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in results)
    assert statuses == [200] * 3 + [429] * 5, statuses
    limited = [r for r in results if r.status == 429]
    assert all(r.json["detail"] == "Rate limit exceeded. Maximum 3 OTPs per minute for this API key"
               for r in limited), limited[0]
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in limited)
    assert len(gw.send_pids()) >= 2, "the limit held across both otp-fcgi processes"
    assert len(bot.requests("sendMessage")) == 3
    assert send(gw, 8500, x_key("forum-key")).status == 200, "another key has its own budget"


def owners(gw):
    """message_id -> the owner its pending row records, read as an operator would."""
    if gw.redis is None:
        return dict(gw.db_rows("SELECT message_id, owner FROM pending_deletions"))
    r, p = gw.redis, gw.redis_prefix
    out = {}
    for i in r.cli("ZRANGE", p + "pending:due", 0, -1).split():
        h = dict(zip(*[iter(r.cli("HGETALL", f"{p}pending:{i}").split("\n"))] * 2))
        if "message_id" in h:
            out[int(h["message_id"])] = h.get("owner")
    return out


def revoke(gw, chat, message_id, headers):
    return gw.request("POST", "/revoke-otp", body={"chat_id": str(chat), "message_id": message_id},
                      headers={"Content-Type": "application/json", **headers})


def deletions(bot):
    return bot.requests("deleteMessage") + bot.requests("deleteMessages")


def test_a_code_is_revoked_only_with_the_key_that_sent_it(make_gateway, bot):
    """Another key gets the very 404 of an unknown message (nothing tells it the code exists)
    and no Bot API call; the sender's key revokes it; the unnamed API_KEY is an owner too."""
    gw = make_gateway(env={"OTP_API_KEYS": "shop:key-one,forum:key-two",
                           "API_KEY": "plain-key"})
    a = send(gw, 8301, x_key("key-one"))
    b = send(gw, 8301, bearer("plain-key"))
    assert a.status == 200 and b.status == 200, (a, b)
    a_id, b_id = a.json["message_id"], b.json["message_id"]
    rows = owners(gw)
    assert rows[a_id] == "shop"
    assert rows[b_id] is not None and rows[b_id].startswith("#") and "plain" not in rows[b_id]

    unknown = revoke(gw, 8301, 999999, x_key("key-two"))
    assert unknown.status == 404, unknown
    for chat, mid, headers in [(8301, a_id, x_key("key-two")), (8301, a_id, bearer("plain-key")),
                               (8301, b_id, x_key("key-one")), (8301, b_id, bearer("key-two"))]:
        r = revoke(gw, chat, mid, headers)
        assert r.status == 404, (mid, headers, r)
        assert r.text == unknown.text, "another key's code answers as an unknown one"
    assert deletions(bot) == [], "no Bot API call for another key's code"
    assert sorted(owners(gw)) == sorted([a_id, b_id]), "both rows untouched"

    assert revoke(gw, 8301, a_id, bearer("key-one")).status == 200
    assert revoke(gw, 8301, b_id, x_key("plain-key")).status == 200
    assert len(deletions(bot)) == 2
    assert owners(gw) == {}


def doc_block(name):
    """operations.md's block marked `sh id=NAME`, dedented (it sits in a numbered list)."""
    text = (ROOT / "docs/operations.md").read_text()
    [block] = re.findall(rf"^[ ]*```sh id={name}\n(.*?)^[ ]*```", text, re.M | re.S)
    return textwrap.dedent(block)


def test_the_documented_rotation_steps_keep_every_valid_key_working(make_gateway, workdir):
    """docs/operations.md's rotation, its blocks run as written (the keys file's path and group
    are this test's), under a steady load: the new key works within 2 s of its addition and
    never fails after, the old one fails within 2 s of its removal, the forum's never fails."""
    keys = Path(workdir) / "api-keys"
    group = grp.getgrgid(os.getgid()).gr_name
    subs = [("/etc/otp-gateway/api-keys", str(keys)), ("-g otp-gateway", f"-g {group}")]
    env = {**os.environ, "OLD": "old-shop-key", "NEW": "new-shop-key", "FORUM": "forum-key"}

    def run(name):
        script = doc_block(name)
        for old, new in subs:
            assert old in script, f"operations.md's {name} block no longer has {old!r}"
            script = script.replace(old, new)
        subprocess.run(["sh", "-ec", script], cwd=workdir, env=env, check=True, timeout=30)

    keys.write_text("shop old-shop-key\nforum forum-key\n")
    keys.chmod(0o640)
    gw = make_gateway(env={"OTP_API_KEYS_FILE": str(keys), "RATE_LIMIT_PER_IP": "0"})
    # key -> the instant from which it must work; the documented bound: within 2 s of a change
    must_work = {"forum-key": 0, "old-shop-key": 0}
    failures, answers, stop = [], [], threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            i += 1
            key = ["old-shop-key", "new-shop-key", "forum-key"][i % 3]
            works = time.monotonic() >= must_work.get(key, float("inf"))  # as the request left
            r = send(gw, 960000 + i, x_key(key), expire=5)
            if works and r.status != 200:
                failures.append((key, r.status, r.text))
            answers.append((time.monotonic(), key, r.status))
            stop.wait(0.05)
    t = threading.Thread(target=load)
    t.start()
    try:
        wait_until(lambda: len(answers) >= 6, 10 * SLOW, "the load to start")
        run("rotate-add")
        must_work["new-shop-key"] = time.monotonic() + 2 * SLOW
        wait_until(lambda: len([a for a in answers if a[0] > must_work["new-shop-key"]]) >= 6,
                   10 * SLOW, "sends with both keys")
        del must_work["old-shop-key"]
        run("rotate-drop")
        dropped = time.monotonic()
        wait_until(lambda: send(gw, 969002, x_key("old-shop-key")).status == 401, 2 * SLOW,
                   "the dropped key to fail")
        seen = len(answers)
        wait_until(lambda: len(answers) >= seen + 6, 10 * SLOW, "sends after the drop")
    finally:
        stop.set()
        t.join(30)
    assert not failures, failures[:5]
    late = [a for a in answers if a[1] == "old-shop-key" and a[0] > dropped + 2 * SLOW and a[2] != 401]
    assert not late, late[:3]
    assert "new-shop-key" not in gw.log_text() and "old-shop-key" not in gw.log_text()
