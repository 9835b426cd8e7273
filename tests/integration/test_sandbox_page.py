"""The /sandbox page (sandbox mode only): tests/browser/sandbox.spec.js drives Debian's headless
Chromium through it against a live gateway and the Bot API emulator; screenshots go to
BUILD/test-output/sandbox/. Also: 404 outside sandbox mode, the read-only data endpoint that
never shows the token, the emulator's GET /_control/sandbox, and `make run`'s banner."""
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import (BUILD, ROOT, SLOW, TOKEN, TOKEN_SECRET, Gateway, free_port, parse_iso,
                      wait_until)
from test_browser import CHROMIUM, assets, run_spec  # noqa: F401 (assets is a fixture)

SPEC_JS = ROOT / "tests" / "browser" / "sandbox.spec.js"
OUTDIR = BUILD / "test-output" / "sandbox"
SANDBOX_PATHS = ("/sandbox", "/sandbox.html", "/sandbox.js", "/sandbox.css", "/sandbox/messages")
# the deletion promise (README): never before delete_at, normally within a second after it
DEADLINE = 1.0 * SLOW
# sent straight to the emulator: what the page must render as markup, and what it must not
MARKUP = ('<b>bold</b> and <i>italic</i>, code <code>1234</code>\n'
          '&lt;img src=x onerror="window.pwned=1"&gt;\n'
          '<a href="javascript:window.pwned=2">bad link</a> <a href="https://example.org/">good link</a>'
          ' <tg-spoiler>spoiler</tg-spoiler>')


@pytest.fixture
def sandbox(make_gateway, bot):
    """A gateway in sandbox mode whose emulator reads its database for delete_at, as make run's."""
    gw = make_gateway(env={"OTP_SANDBOX": "1"})
    bot.config(sandbox_db=gw.db_path)
    return gw


def spec_result(out):
    line = [l for l in out.splitlines() if l.startswith("# result ")][-1]
    return json.loads(line[len("# result "):])


@pytest.mark.sqlite_only
def test_sandbox_page_shows_the_code_its_countdown_and_its_deletion_on_time(sandbox, bot, assets):
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: .ci/install-deps installs chromium"
    for f in OUTDIR.glob("sandbox-*.png"):
        f.unlink()
    chat_id, otp, markup_chat = "424242", "735091", "777000"
    r = bot.bot_call("sendMessage", {"chat_id": markup_chat, "text": MARKUP, "parse_mode": "HTML"})
    assert r["ok"], r
    rc, out = run_spec(["node", str(SPEC_JS), f"http://127.0.0.1:{sandbox.port}", str(OUTDIR),
                        chat_id, otp, markup_chat], timeout=120 * SLOW)
    assert rc == 0, f"sandbox.spec.js failed (screenshots in {OUTDIR}):\n{out}"
    for name in ("sandbox-before.png", "sandbox-after.png", "sandbox-dark.png",
                 "sandbox-narrow.png", "sandbox-markup.png"):
        data = (OUTDIR / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10000, name
    result = spec_result(out)

    # what the emulator recorded: the message the page's form sent, and when it was deleted
    [msg] = bot.messages(chat_id)
    answer = result["answer"]
    assert msg["message_id"] == answer["message_id"] and otp in msg["text"]
    assert msg["protect_content"] is True
    gone = msg["deleted_at"]
    promised = parse_iso(answer["delete_at"])
    # the page counted down to the instant the store holds: Telegram's confirmation + 5 s,
    # which the answer's delete_at (whole seconds) truncates
    exact = result["delete_at_ms"] / 1000
    assert int(exact) == promised, (exact, answer)
    assert exact >= msg["sent_at"] + 5.0 - 0.001  # the store keeps whole milliseconds
    assert gone >= promised, "deleted before the answered delete_at"
    assert gone >= exact - 0.001, f"deleted {exact - gone:.3f} s before the stored delete_at"
    assert gone <= exact + DEADLINE, f"deleted {gone - exact:.3f} s after delete_at"
    # the page shows the emulator's deletion time, and noticed it at once (long polling)
    assert abs(result["deleted_at_ms"] - gone * 1000) <= 1, (result, gone)
    seen = result["seen_deleted_ms"] / 1000
    assert 0 <= seen - gone <= DEADLINE, f"the page showed the deletion {seen - gone:.3f} s late"
    assert seen - exact <= DEADLINE, f"marked deleted {seen - exact:.3f} s after delete_at"
    # the page's verdict: on time when deleted within 1 s of delete_at (whatever SLOW is)
    verdict = "on time" if gone - exact <= 1.0 else "late"
    assert result["trace"].endswith(f"after delete_at {verdict}"), (result["trace"], gone - exact)
    print(out)


def test_sandbox_page_asks_for_the_api_key_when_one_is_set(make_gateway, bot, assets):
    gw = make_gateway(env={"OTP_SANDBOX": "1", "API_KEY": "sandbox-key-5678"})
    bot.config(sandbox_db=gw.db_path)
    chat_id, otp = "515151", "246810"
    rc, out = run_spec(["node", str(SPEC_JS), "--api-key", "sandbox-key-5678",
                        f"http://127.0.0.1:{gw.port}", str(OUTDIR), chat_id, otp],
                       timeout=120 * SLOW)
    assert rc == 0, f"sandbox.spec.js --api-key failed (screenshots in {OUTDIR}):\n{out}"
    # the 401 sent nothing; the send with the key did
    [msg] = bot.messages(chat_id)
    assert msg["message_id"] == spec_result(out)["answer"]["message_id"]


def test_sandbox_paths_are_404_outside_sandbox_mode(gateway):
    for path in SANDBOX_PATHS:
        r = gateway.get(path)
        assert r.status == 404, (path, r)
        assert r.json == {"detail": "Not Found"}, (path, r)


@pytest.mark.sqlite_only
def test_sandbox_data_is_read_only_and_never_shows_the_token(sandbox, bot):
    r = sandbox.send_otp({"chat_id": "909090", "otp": "1357", "expire_seconds": 60})
    assert r.status == 200, r
    page = sandbox.get("/sandbox")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" in page.text
    # the page builds every element itself: nothing from the network is parsed as markup
    code = "\n".join(l for l in (ROOT / "www/sandbox.js").read_text().splitlines()
                     if not l.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "DOMParser", "createContextualFragment"):
        assert sink not in code, sink
    for path in ("/sandbox.js", "/sandbox.css"):
        assert sandbox.get(path).status == 200, path

    data = sandbox.get("/sandbox/messages")
    assert data.status == 200 and data.headers["Cache-Control"] == "no-store", data
    [chat] = [c for c in data.json["chats"] if c["chat_id"] == "909090"]
    [m] = chat["messages"]
    assert m["entities"] == [{"type": "code", "offset": 16, "length": 4}], m
    utf16 = m["text"].encode("utf-16-le")  # entity offsets count UTF-16 units (the emoji: 2)
    assert utf16[2 * 16:2 * 20].decode("utf-16-le") == "1357" and m["protect_content"] is True
    assert int(m["delete_at"]) == parse_iso(r.json["delete_at"])
    everything = [sandbox.get(p) for p in ("/sandbox", "/sandbox.js", "/sandbox/messages")]
    for resp in everything:
        assert TOKEN_SECRET not in resp.text and TOKEN not in resp.text
        assert TOKEN_SECRET not in str(resp.headers)

    # only GET of that one path reaches the emulator, and only its read-only view
    head = sandbox.request("HEAD", "/sandbox/messages")
    assert head.status == 404 and head.headers["Content-Type"] == "application/json", head
    before = bot._call("GET", "/_control/config")
    for method, path, body in (("POST", "/sandbox/messages", {"reset": True}),
                               ("PUT", "/sandbox/messages", None),
                               ("GET", "/sandbox/messages/x", None),
                               ("GET", "/sandbox/messagesx", None),
                               ("GET", "/sandbox/../_control/config", None),
                               ("GET", "/_control/messages", None),
                               ("GET", "/sandbox/_control/requests", None)):
        resp = sandbox.request(method, path, body=body,
                               headers={"Content-Type": "application/json"})
        assert resp.status in (404, 405), (method, path, resp)
        assert resp.json is not None and "messages" not in resp.json, (method, path, resp)
    assert bot.messages("909090"), "nothing was reset"
    assert bot._call("GET", "/_control/config") == before


def test_sandbox_page_is_off_with_a_warning_when_the_emulator_address_is_not_http(workdir):
    env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": "1", "OTP_FCGI_BIN": "/x",
           "OTP_RUN_DIR": workdir, "OTP_WWW_DIR": str(ROOT / "www"), "OTP_SANDBOX": "1"}
    shown = {}
    for base in ("http://127.0.0.1:4567", "http://127.0.0.1:4567/", "https://127.0.0.1:4567",
                 "http://127.0.0.1:4567/path", "http://127.0.0.1", "http://bad host:1"):
        p = subprocess.run(["lighttpd", "-p", "-f", str(ROOT / "lighttpd.conf")],
                           env=dict(env, TELEGRAM_API_BASE=base), capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 0, (base, p.stderr)
        on = re.search(r'var\.sandbox_paths\s*=\s*"\^/sandbox', p.stdout) is not None
        assert on != ("no /sandbox page" in p.stderr), (base, p.stderr)
        shown[base] = on
    assert shown == {"http://127.0.0.1:4567": True, "http://127.0.0.1:4567/": True,
                     "https://127.0.0.1:4567": False, "http://127.0.0.1:4567/path": False,
                     "http://127.0.0.1": False, "http://bad host:1": False}


# ---------------------------------------------------------------- the emulator's view
def test_emulator_gives_text_and_entities_as_telegram_does(bot):
    html = ('  🔐 <b>a<i>b</i></b>\n<pre><code class="language-c">x;</code></pre>'
            '<a href="https://t.me/">t</a><a>plain</a><b></b><tg-spoiler>s</tg-spoiler>  ')
    assert bot.bot_call("sendMessage", {"chat_id": "31", "text": html, "parse_mode": "HTML"})["ok"]
    [chat] = FakeBotView(bot).get()["chats"]
    [m] = chat["messages"]
    assert m["text"] == "🔐 ab\nx;tplains"
    # offsets in UTF-16 code units: the emoji counts 2; leading spaces are stripped
    assert m["entities"] == [
        {"type": "bold", "offset": 3, "length": 2},
        {"type": "italic", "offset": 4, "length": 1},
        {"type": "pre", "offset": 6, "length": 2, "language": "c"},
        {"type": "text_link", "offset": 8, "length": 1, "url": "https://t.me/"},
        {"type": "spoiler", "offset": 14, "length": 1},
    ], m["entities"]
    assert m["delete_at"] is None and m["deleted_at"] is None
    assert chat["chat"] == {"id": 31, "first_name": "Sandbox User", "type": "private"}


def test_emulator_view_long_polls_and_rejects_bad_parameters(bot):
    view = FakeBotView(bot)
    version = view.get()["version"]
    t0 = time.monotonic()
    assert view.get(since=version, wait=0.3)["version"] == version
    assert time.monotonic() - t0 >= 0.25, "answered before its wait without a change"
    threading.Timer(0.3, lambda: bot.bot_call(
        "sendMessage", {"chat_id": "32", "text": "hello"})).start()
    t0 = time.monotonic()
    after = view.get(since=version, wait=10)
    assert after["version"] > version and time.monotonic() - t0 < 5 * SLOW
    assert [c["chat_id"] for c in after["chats"]] == ["32"]
    for q in ("since=x", "wait=-1", "wait=26", "wait=nan"):
        status, _ = view.raw("?" + q)
        assert status == 400, q


class FakeBotView:
    """GET /_control/sandbox of the emulator, straight."""

    def __init__(self, bot):
        self.bot = bot

    def raw(self, query=""):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.bot.port, timeout=30)
        conn.request("GET", "/_control/sandbox" + query)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        return resp.status, body

    def get(self, since=None, wait=0):
        q = "" if since is None else f"?since={since}&wait={wait}"
        status, body = self.raw(q)
        assert status == 200, body
        return body


# ---------------------------------------------------------------- make run
def test_make_run_prints_the_sandbox_address_and_its_page_has_delete_at(workdir):
    port = free_port()
    marker = uuid.uuid4().hex
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "TELEGRAM_BOT_TOKEN": "",
           "OTP_DB_PATH": f"{workdir}/sandbox.db", "SANDBOX_LATENCY_MS": "0",
           "OTP_TEST_MARKER": marker}
    log_path = Path(workdir) / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(ROOT / "conf/run.sh"), str(BUILD)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = lambda: log_path.read_text()
        wait_until(lambda: "listening on" in text() and proc.poll() is None, 15 * SLOW, "make run")
        assert f"http://127.0.0.1:{port}/sandbox" in text(), text()
        gw = Gateway.__new__(Gateway)
        gw.port = port
        wait_until(gw.healthy, 10 * SLOW, "health")
        assert gw.get("/sandbox").status == 200
        r = gw.send_otp({"chat_id": "123456789", "otp": "483920", "expire_seconds": 60})
        assert r.status == 200, r
        # run.sh gave the emulator the database: delete_at shows up without a page open
        def delete_at():
            for c in gw.get("/sandbox/messages").json["chats"]:
                for m in c["messages"]:
                    return m["delete_at"]
        at = wait_until(delete_at, 5 * SLOW, "delete_at in /sandbox/messages")
        assert int(at) == parse_iso(r.json["delete_at"])
    finally:
        proc.send_signal(signal.SIGTERM)  # run.sh stops what it started
        proc.wait(timeout=30 * SLOW)
    wait_until(lambda: not marked_processes(marker), 10, "every started process to exit")


def marked_processes(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"OTP_TEST_MARKER={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def test_emulator_reads_delete_at_again_when_deleting_and_keeps_a_revoked_ones_first(bot, workdir):
    """The emulator reads the row of a message it is asked to delete, since a revoke (POST
    /revoke-otp) moves its delete_at to the revoke's moment; the page shows both."""
    import sqlite3
    db = Path(workdir) / "pending.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE pending_deletions (chat_id TEXT, message_id INTEGER, "
                "delete_at_ms INTEGER)")
    con.commit()
    bot.config(sandbox_db=str(db))
    mids = [bot.bot_call("sendMessage", {"chat_id": "@Sandbox_Chan", "text": f"m{i}"})
            ["result"]["message_id"] for i in (1, 2)]
    due = int(time.time() * 1000) + 60000
    con.executemany("INSERT INTO pending_deletions VALUES (?, ?, ?)",
                    [("@sandbox_chan", mid, due) for mid in mids])  # the store keeps any case
    con.commit()
    view = FakeBotView(bot)
    wait_until(lambda: all(m["delete_at"] == due / 1000 for c in view.get()["chats"]
                           for m in c["messages"]), 5, "delete_at read from the database")
    # a revoke moves the first one's delete_at to now, then it is deleted
    revoked = due - 55000
    con.execute("UPDATE pending_deletions SET delete_at_ms = ? WHERE message_id = ?",
                (revoked, mids[0]))
    con.commit()
    assert bot.bot_call("deleteMessage", {"chat_id": "@Sandbox_Chan", "message_id": mids[0]})["ok"]
    con.execute("DELETE FROM pending_deletions WHERE message_id = ?", (mids[0],))
    con.commit()
    con.close()
    [chat] = view.get()["chats"]
    first, second = chat["messages"]
    assert (first["delete_at"], first["first_delete_at"]) == (revoked / 1000, due / 1000), first
    assert first["deleted_at"] is not None
    assert (second["delete_at"], second["first_delete_at"]) == (due / 1000, None), second
