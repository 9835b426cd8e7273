"""The API docs in a real browser: tests/browser/docs.spec.js drives Debian's headless Chromium
(playwright-core) through /docs and /redoc of a live gateway, sends an OTP with Swagger UI's
"Try it out" to the Bot API emulator and revokes it the same way, and leaves screenshots in
BUILD/test-output/browser/."""
import os
import shutil
import signal
import subprocess

import pytest

from conftest import BUILD, ROOT, SLOW

SPEC_JS = ROOT / "tests" / "browser" / "docs.spec.js"
CHROMIUM = "/usr/bin/chromium"
OUTDIR = BUILD / "test-output" / "browser"
SCREENSHOTS = ("docs.png", "docs-try-it-out.png", "redoc.png")


@pytest.fixture(scope="module")
def assets():
    """www/build-assets.sh has run (npm ci when the lock changed; www/vendor/); skips the test
    when node or npm is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (.ci/install-deps installs them)")
    r = subprocess.run([str(ROOT / "www" / "build-assets.sh")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"www/build-assets.sh failed:\n{r.stdout}\n{r.stderr}"


def run_spec(argv, timeout):
    """Runs the spec in its own process group, so that a hung chromium dies with it."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"docs.spec.js did not finish in {timeout} s:\n{out}")
    return proc.returncode, out


@pytest.mark.serial  # a browser's page loads, bounded in time, beside a busy machine would time out
def test_swagger_ui_sends_an_otp_and_redoc_shows_the_operation(gateway, bot, assets):
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: .ci/install-deps installs chromium"
    shutil.rmtree(OUTDIR, ignore_errors=True)
    chat_id, otp = "424242", "135790"
    rc, out = run_spec(["node", str(SPEC_JS), f"http://127.0.0.1:{gateway.port}", str(OUTDIR),
                        chat_id, otp], timeout=120 * SLOW)
    assert rc == 0, f"docs.spec.js failed (screenshots in {OUTDIR}):\n{out}"
    for name in SCREENSHOTS:
        data = (OUTDIR / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10000, name

    # the page's request went through lighttpd and otp-fcgi to the emulator, and was recorded
    [msg] = bot.messages(chat_id)
    assert f"Your OTP is: {otp}" in msg["text"]
    assert f"message_id {msg['message_id']}" in out
    # and the page's revoke deleted it at once: before its delete_at, 30 s after the send
    assert '"Try it out" revoked it: 200' in out
    assert msg["deleted_at"] is not None and msg["deleted_at"] < msg["sent_at"] + 29
    assert gateway.db_rows() == []
    print(out)
