"""The Docker image as built from the Dockerfile (podman, a local Debian 12 base): what the
black-box suite (test_frontends.py, kind "container") cannot see from outside."""
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, SLOW, TOKEN, Gateway, free_port, wait_until
import container

# builds and runs containers, which would stretch the timing of tests beside it
pytestmark = pytest.mark.serial


@pytest.fixture
def ctr(workdir, bot, container_gateway_factory):
    made = []

    def make(**kw):
        gw = container_gateway_factory(workdir, bot, **kw)
        made.append(gw)
        return gw
    yield make
    for gw in made:
        gw.stop()


def test_image_keeps_its_healthcheck_runs_as_non_root_and_holds_no_node(container_image, ctr):
    [info] = json.loads(container.podman("image", "inspect", container_image).stdout)
    check = info.get("Healthcheck") or info["Config"].get("Healthcheck") or {}
    assert "/dev/tcp/127.0.0.1/$PORT" in " ".join(check.get("Test", [])), "HEALTHCHECK kept (--format docker)"
    assert info["Config"]["User"] == "otp"
    p = container.podman("run", "--rm", *container.RUN_OPTS, "--entrypoint", "sh", container_image, "-c",
                         "command -v node npm; find / -xdev -name node_modules; "
                         "ls -R /usr/local/share/otp-gateway/www/vendor")
    assert "node" not in p.stdout.replace("/www/vendor", ""), p.stdout
    assert "swagger-ui-bundle.js" in p.stdout and "redoc.standalone.js" in p.stdout, "the docs' assets"
    gw = ctr()
    gw.start()
    assert container.podman("exec", gw.name, "id", "-u").stdout.strip() == "999"
    assert container.podman("healthcheck", "run", gw.name, check=False).returncode == 0
    r = gw.get("/docs")
    assert r.status == 200 and "swagger-ui-bundle.js" in r.text
    assert gw.get("/vendor/" + r.text.split('src="vendor/')[1].split('"')[0]).status == 200


@pytest.mark.parametrize("victim", ["otp-deleter", "lighttpd"])
def test_container_exits_non_zero_when_a_child_dies(ctr, victim):
    gw = ctr()
    gw.start()
    container.podman("exec", gw.name, "sh", "-c",
                     f'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = {victim} ] && kill -9 ${{p#/proc/}}; done; true')
    assert gw.exit_code(timeout=30 * SLOW) != 0
    assert "a process exited; stopping" in gw.log_text()


def test_tmpfs_not_writable_by_the_user_stops_with_a_message_naming_the_fix(container_image):
    # a plain --tmpfs is root's 0750 (as Docker mounts it without uid=): the user otp cannot write
    p = container.podman("run", "--rm", *container.RUN_OPTS, "--tmpfs", "/run/otp-gateway",
                         container_image, check=False, timeout=60)
    assert p.returncode == 1, p
    assert "/run/otp-gateway is not writable by uid 999" in p.stderr
    assert "uid=999,gid=999" in p.stderr and ":U" in p.stderr


def test_token_from_a_secret_file_and_a_stop_deletes_pending_rows_at_their_time(ctr, bot, workdir, request):
    # the token as a Docker/podman secret (mounted at /run/secrets/telegram_bot_token), not -e;
    # the product's stop timeout (the harness's teardown sets 0)
    token = Path(workdir) / "telegram_bot_token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    secret = f"otp-test-token-{uuid.uuid4().hex[:8]}"
    container.podman("secret", "create", secret, str(token))
    request.addfinalizer(lambda: container.podman("secret", "rm", secret, check=False))
    gw = ctr(env={"TELEGRAM_BOT_TOKEN": None, "DELETER_STOP_TIMEOUT_SECONDS": None,
                  "MIN_EXPIRE_SECONDS": "1"},
             extra=["--secret", f"{secret},target=telegram_bot_token"])
    gw.start()
    [info] = json.loads(container.podman("inspect", gw.name).stdout)
    assert not any(e.startswith("TELEGRAM_BOT_TOKEN") for e in info["Config"]["Env"]), "no token in -e"
    assert info["Config"]["StopSignal"] in (15, "SIGTERM", "15")
    envs = container.podman("exec", gw.name, "sh", "-c",
                            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert TOKEN.split(":")[1] not in envs, "the token in a process's environment"
    rows = []
    for chat, expire in (("7301", 3), ("7302", 8)):
        r = gw.send_otp({"chat_id": chat, "otp": "4321", "expire_seconds": expire})
        assert r.status == 200, r
        [call] = [c for c in bot.requests("sendMessage") if str(c["params"].get("chat_id")) == chat]
        rows.append((chat, r.json["message_id"], call["answered_at"] + expire))
    # docker stop -t 120 (the documented grace): SIGTERM to the entrypoint, which returns once
    # the web server stopped and otp-deleter drained
    container.podman("stop", "-t", "120", gw.name, timeout=180)
    stopped = time.time()
    assert gw.state()["ExitCode"] == 0, gw.log_text()
    for chat, mid, due in rows:
        [msg] = [m for m in bot.messages(chat) if m["message_id"] == mid]
        assert msg["deleted_at"] is not None, f"chat {chat}: left in the chat by the stop"
        assert msg["deleted_at"] >= due, f"deleted {due - msg['deleted_at']:.3f} s early"
        assert msg["deleted_at"] - due <= 1.0 * SLOW, f"deleted {msg['deleted_at'] - due:.3f} s late"
    assert stopped - rows[-1][2] <= 2.0 * SLOW, "the container outlived its last deletion"
    lines = [json.loads(l) for l in gw.log_text().splitlines() if l.startswith("{")]
    [last] = [l for l in lines if l.get("message") == "otp-deleter stopping"]
    assert last["pending_left"] == 0 and last["deleted_early"] == 0, last


def doc_block(name):
    text = (ROOT / "docs/container.md").read_text()
    [block] = re.findall(rf"^```sh id={name}\n(.*?)^```", text, re.M | re.S)
    return block


def substitute(text, subs):
    """text with each (old, new) replaced; each old must be there exactly once, so a doc that
    drifts from what the test knows fails here rather than running something else."""
    for old, new in subs:
        assert text.count(old) == 1, f"docs/container.md's podman block no longer has {old!r}"
        text = text.replace(old, new)
    return text


def test_the_documented_podman_run_serves_and_its_stop_timeout_drains(container_image, bot, workdir, request):
    """docs/container.md's podman block as a user types it. Only what this machine needs
    differs: the image is the one built here (tagged under a name of this test), the network
    is the host's (to reach the emulator on loopback), and the names, port and key are this
    test's."""
    uid = uuid.uuid4().hex[:8]
    name, secret, tag, key = f"otp-doc-{uid}", f"otp-doc-token-{uid}", f"localhost/otp-doc:{uid}", f"k-{uid}"
    port = free_port()
    request.addfinalizer(lambda: (container.podman("rm", "-f", name, check=False),
                                  container.podman("secret", "rm", secret, check=False),
                                  container.podman("rmi", tag, check=False)))
    script = substitute(doc_block("podman-run"), [
        ("podman build --format docker -t otp-gateway .", f"podman tag {container_image} {tag}"),
        ("secret create telegram_bot_token ", f"secret create {secret} "),
        ("--secret telegram_bot_token ", f"--secret {secret},target=telegram_bot_token "),
        ("--name otp ", f"--name {name} "),
        ("-p 55155:55155 ", " ".join([*container.RUN_OPTS, "-e", f"PORT={port}",
                                      "-e", f"TELEGRAM_API_BASE={bot.url}", ""])),
        ("API_KEY=...", f"API_KEY={key}"),
        ("--stop-timeout 120 otp-gateway\n", f"--stop-timeout 120 {tag}\n"),
    ])
    p = subprocess.run(["sh", "-ec", script], cwd=workdir, env={**os.environ, "TOKEN": TOKEN},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (Path(workdir) / "telegram_bot_token").exists(), "the block leaves no token file"
    gw = Gateway.__new__(Gateway)
    gw.port = port
    wait_until(gw.healthy, 30 * SLOW, "the documented container to answer /health")
    assert gw.send_otp({"chat_id": "7401", "otp": "4321"}).status == 401
    r = gw.request("POST", "/send-otp", body={"chat_id": "7401", "otp": "4321", "expire_seconds": 5},
                   headers={"Content-Type": "application/json", "X-API-Key": key})
    assert r.status == 200, r
    [call] = [c for c in bot.requests("sendMessage") if str(c["params"].get("chat_id")) == "7401"]
    due = call["answered_at"] + 5
    [info] = json.loads(container.podman("inspect", name).stdout)
    assert info["Config"]["StopTimeout"] == 120
    # a plain `podman stop`: the grace is the documented --stop-timeout's, long enough to drain
    container.podman("stop", name, timeout=180)
    [info] = json.loads(container.podman("inspect", name).stdout)
    assert info["State"]["ExitCode"] == 0
    [msg] = [m for m in bot.messages("7401") if m["message_id"] == r.json["message_id"]]
    assert msg["deleted_at"] is not None and msg["deleted_at"] >= due, "deleted by the stop, never early"
    logs = container.podman("logs", name).stdout + container.podman("logs", name).stderr
    assert TOKEN.split(":")[1] not in logs and key not in logs
