"""The PHP client (clients/php/OtpGateway.php) against a live gateway, with the php CLI; and its
example sign-in page (clients/php/signin-example.php) served by `php -S` in front of a gateway in
sandbox mode, used in Debian's headless Chromium by tests/browser/signin.spec.js: sign in with
the code read from the emulator and see its message revoked; three wrong codes lock the attempt.
Screenshots in BUILD/test-output/signin/."""
import http.client
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, SLOW, free_port, stop_process, wait_until
from test_browser import CHROMIUM, assets, run_spec  # noqa: F401 (assets is a fixture)

CLIENT = ROOT / "clients/php/OtpGateway.php"
PAGE = ROOT / "clients/php/signin-example.php"
SPEC_JS = ROOT / "tests/browser/signin.spec.js"
OUTDIR = BUILD / "test-output" / "signin"

# calls the client with argv's JSON and prints what came back, or the exception's fields
CALL = r"""
require $argv[1];
[$base, $key, $call, $args] = [$argv[2], $argv[3] ?: null, $argv[4], json_decode($argv[5], true)];
try {
    $r = (new OtpGateway($base, $key, 5))->$call(...$args);
    echo json_encode(['ok' => $r]);
} catch (OtpGatewayException $e) {
    echo json_encode(['status' => $e->status, 'detail' => $e->detail,
                      'retry_after' => $e->retryAfter, 'message' => $e->getMessage()]);
}
"""


def php():
    path = shutil.which("php")
    assert path, "php (Debian packages php-cli php-curl) is needed: .ci/install-deps installs them"
    return path


def call(base, method, *args, key=""):
    p = subprocess.run([php(), "-r", CALL, str(CLIENT), base, key, method, json.dumps(args)],
                       capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode == 0 and not p.stderr, p.stdout + p.stderr
    return json.loads(p.stdout)


def test_php_client_sends_revokes_and_raises_with_status_detail_and_retry_after(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "1", "API_KEY": "k-php-test"})
    base = f"http://127.0.0.1:{gw.port}"
    sent = call(base, "sendOtp", "777", "482913", 30, key="k-php-test")["ok"]
    assert sent["success"] is True and sent["chat_id"] == "777" and sent["message_id"] > 0
    [msg] = bot.messages("777")
    assert "482913" in msg["text"]
    revoked = call(base, "revokeOtp", "777", sent["message_id"], key="k-php-test")["ok"]
    assert revoked["status"] in (200, 202), revoked
    wait_until(lambda: bot.messages("777")[0]["deleted_at"] is not None, 10 * SLOW,
               "the revoked message deleted")
    # refusals: each an exception with the gateway's status, detail and Retry-After
    gone = call(base, "revokeOtp", "777", sent["message_id"], key="k-php-test")
    assert gone["status"] == 404 and isinstance(gone["detail"], str), gone
    limited = call(base, "sendOtp", "777", "111111", 30, key="k-php-test")
    assert limited["status"] == 429 and 0 < limited["retry_after"] <= 3600, limited
    assert isinstance(limited["detail"], str) and limited["detail"] in limited["message"]
    invalid = call(base, "sendOtp", "778", "12ab", None, key="k-php-test")
    assert invalid["status"] == 422 and invalid["detail"][0]["loc"] == ["body", "otp"], invalid
    assert invalid["retry_after"] is None
    assert call(base, "sendOtp", "778", "123456", key="wrong")["status"] == 401
    down = call(f"http://127.0.0.1:{free_port()}", "sendOtp", "778", "123456")
    assert down["status"] == 0 and "unreachable" in down["message"], down
    assert len(bot.messages("778")) == 0


@pytest.fixture
def signin_page(make_gateway, bot, workdir):
    """The example page on php -S, in front of a gateway in sandbox mode."""
    gw = make_gateway(env={"OTP_SANDBOX": "1"})
    bot.config(sandbox_db=gw.db_path)
    port = free_port()
    sessions = os.path.join(workdir, "php-sessions")
    os.mkdir(sessions)
    env = {"PATH": os.environ["PATH"], "OTP_GATEWAY_URL": f"http://127.0.0.1:{gw.port}",
           "SIGNIN_HMAC_KEY": os.urandom(32).hex()}
    log = open(os.path.join(workdir, "php.log"), "wb")
    proc = subprocess.Popen([php(), "-d", f"session.save_path={sessions}", "-S",
                             f"127.0.0.1:{port}", str(PAGE)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    def up():
        assert proc.poll() is None, "php -S exited"
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/")
            return c.getresponse().status == 200
        except OSError:
            return False
    try:
        wait_until(up, 10 * SLOW, "php -S to answer")
        yield f"http://127.0.0.1:{port}/", gw, sessions
    finally:
        stop_process(proc)
        log.close()


@pytest.mark.serial  # a browser's page loads, bounded in time, beside a busy machine would time out
def test_signin_page_signs_in_with_the_code_revokes_it_and_locks_after_three_wrong(
        signin_page, bot, assets):  # noqa: F811
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: .ci/install-deps installs chromium"
    url, gw, sessions = signin_page
    shutil.rmtree(OUTDIR, ignore_errors=True)
    rc, out = run_spec(["node", str(SPEC_JS), url, bot.url, str(OUTDIR), "5550001", "5550002"],
                       timeout=120 * SLOW)
    assert rc == 0, f"signin.spec.js failed (screenshots in {OUTDIR}):\n{out}"
    result = json.loads(out.rsplit("# result ", 1)[1])
    # both messages were deleted at once by the page's revokes, long before their delete_at
    for chat, key in (("5550001", "signed_in_message_id"), ("5550002", "locked_message_id")):
        [msg] = bot.messages(chat)
        assert msg["message_id"] == result[key]
        assert msg["deleted_at"] is not None and msg["deleted_at"] < msg["sent_at"] + 30, msg
    assert gw.db_rows() == []
    # the sessions held the hash and expiry, never a code
    for name in os.listdir(sessions):
        data = open(os.path.join(sessions, name)).read()
        for msg in bot.messages():
            code = next(w for w in msg["text"].replace("<", " ").replace(">", " ").split()
                        if w.isdigit() and len(w) == 6)
            assert code not in data, name
    for name in ("signin-code.png", "signin-done.png", "signin-locked.png"):
        assert (OUTDIR / name).read_bytes().startswith(b"\x89PNG"), name
    print(out)
