"""The Docker image as built from the Dockerfile (podman, a local Debian 12 base): what the
black-box suite (test_frontends.py, kind "container") cannot see from outside."""
import json

import pytest

from conftest import SLOW
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
