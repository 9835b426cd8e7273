"""conf/kubernetes/ run without a cluster: `podman kube play` starts the Deployment from the
locally built image with the Bot API pointed at the emulator (container.KubeGateway, which also
lists what it adapts for podman); a send works and its message is deleted; a stop of the pod
with a row pending drains it (no pending deletion left). The black-box suite runs against the
pod too (test_frontends.py, kind "kubernetes")."""
import json
import time

import pytest

from conftest import SLOW, TOKEN

# podman kube play beside other containers and a busy machine: one at a time
pytestmark = pytest.mark.serial


@pytest.fixture
def pod(workdir, bot, kube_gateway_factory):
    gw = kube_gateway_factory(workdir, bot, {"MIN_EXPIRE_SECONDS": "1",
                                             "DELETER_STOP_TIMEOUT_SECONDS": None})
    yield gw
    gw.stop()


def test_kube_play_sends_deletes_and_a_pod_stop_drains(pod, bot):
    pod.start()
    # the manifest's own stop timeout for the drain, not the harness's 0
    assert "DELETER_STOP_TIMEOUT_SECONDS" not in pod.container_env()
    assert pod.config["data"]["DELETER_STOP_TIMEOUT_SECONDS"] == "70"
    # non-root, read-only root filesystem, the token as a file and in no process's environment
    assert pod.pm("exec", pod.name, "id", "-u").stdout.strip() == "999"
    assert pod.pm("exec", pod.name, "touch", "/probe", check=False).returncode != 0
    envs = pod.pm("exec", pod.name, "sh", "-c",
                  "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert TOKEN.split(":")[1] not in envs
    assert "TELEGRAM_BOT_TOKEN_FILE=/run/secrets/otp-gateway/telegram_bot_token" in envs
    r = pod.send_otp({"chat_id": "7401", "otp": "4321", "expire_seconds": 6})
    assert r.status == 200, r
    [call] = [c for c in bot.requests("sendMessage") if str(c["params"].get("chat_id")) == "7401"]
    due = call["answered_at"] + 6
    assert time.time() < due - 1, "the stop must come while the row is pending"
    pod.stop_pod()
    stopped = time.time()
    [msg] = [m for m in bot.messages("7401") if m["message_id"] == r.json["message_id"]]
    assert msg["deleted_at"] is not None, "the stop left the message in the chat"
    assert msg["deleted_at"] >= due, f"deleted {due - msg['deleted_at']:.3f} s early"
    assert msg["deleted_at"] - due <= 1.0 * SLOW, f"deleted {msg['deleted_at'] - due:.3f} s late"
    assert stopped >= due, "the pod stopped before the drain could delete the row"
    assert pod.state()["ExitCode"] == 0
    logs = pod.log_text()
    lines = [json.loads(l) for l in logs.splitlines() if l.startswith("{")]
    [last] = [l for l in lines if l.get("message") == "otp-deleter stopping"]
    assert last["pending_left"] == 0 and last["deleted_early"] == 0, last
