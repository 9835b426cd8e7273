"""The Docker image, built and run with podman (no Docker engine here): a Debian 12 base made
locally with mmdebstrap from the mirror apt uses (no registry is reachable), as small as
debian:12-slim (merged /usr without the usrmerge package and its perl, no docs, man pages or
translations), cached under build/container/; the image built from the project's Dockerfile
as shipped (only the base images are build arguments); a ContainerGateway that runs it like a Gateway."""
import json
import os
import re
import shutil
import subprocess
import uuid
import zlib
from pathlib import Path

import yaml

from conftest import ROOT, SLOW, TOKEN, Gateway, wait_until

CACHE = ROOT / "build/container"
BASE_TAR = CACHE / "debian-12-slim.tar"
BASE_IMAGE = "localhost/otp-test-debian:12-slim-like"
# one tag per checkout: two checkouts testing at once must not run each other's image
IMAGE = f"localhost/otp-gateway:test-{zlib.crc32(str(ROOT).encode()):08x}"
# what debian:12-slim leaves out of its packages (its dpkg configuration, kept in the base)
SLIM_DPKG_OPTS = ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
                  "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
                  "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
                  "path-exclude=/usr/share/lintian/*"]
RUN_OPTS = ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=4096:4096",
            "--ulimit", "nproc=4096:4096"]
# the non-root user's tmpfs: podman 4.3 chowns it with U (it rejects Docker's uid=/gid= options)
TMPFS = ["--tmpfs", "/run/otp-gateway:rw,mode=0750,U"]


def podman(*args, timeout=600, check=True):
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"podman {' '.join(args[:3])}: {p.stderr[-3000:]}"
    return p


def unavailable():
    """Why the image cannot be built and run here, or None."""
    for prog, pkg in (("podman", "podman"), ("runc", "runc")):
        if not shutil.which(prog):
            return f"{prog} is not installed (apt-get install {pkg})"
    if os.geteuid() != 0:
        return "podman here runs as root only (no subuid ranges for rootless)"
    if not BASE_TAR.exists() and not shutil.which("mmdebstrap"):
        return "mmdebstrap is not installed (it makes the Debian 12 base image)"
    p = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return f"podman cannot run here: {p.stderr.strip()[-300:]}"
    if not (ROOT / "www/vendor/VERSIONS").exists():
        return "www/vendor/ is not built (make docs-assets): the image takes it from the context"
    return None


def apt_mirrors():
    """The deb lines apt uses here (bookworm, -updates, -security), for mmdebstrap."""
    lines = []
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]:
        if not f.exists():
            continue
        text = f.read_text()
        if f.suffix == ".sources":
            for block in text.split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, re.M))
                if "deb" in fields.get("Types", "").split() and "debian" in fields.get("URIs", ""):
                    for suite in fields["Suites"].split():
                        if suite.startswith("bookworm"):
                            lines.append(f"deb {fields['URIs'].split()[0]} {suite} main")
        else:
            lines += [l.strip() for l in text.splitlines()
                      if re.match(r"deb\s+(\[[^]]*\]\s+)?\S+\s+bookworm(-updates|-security)?\s", l)]
    return lines or ["deb http://deb.debian.org/debian bookworm main"]


def ensure_base_image():
    """localhost/otp-test-debian:12-slim, from the cached tarball (made once with mmdebstrap)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    if not BASE_TAR.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / f"base-{os.getpid()}.tmp.tar"
        # mmdebstrap merges /usr with the usrmerge package, which pulls in perl (45 MB)
        # that debian:12-slim does not have; its merged-usr hook does it without
        p = subprocess.run(["mmdebstrap", "--variant=minbase", "--quiet",
                            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                            *[f"--dpkgopt={o}" for o in SLIM_DPKG_OPTS], "bookworm", str(tmp),
                            *apt_mirrors()], capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"mmdebstrap: {p.stderr[-3000:]}"
        tmp.rename(BASE_TAR)
    # debian:12-slim's configuration: a PATH (podman run supplies one when an image has none,
    # podman kube play does not) and bash as the command
    podman("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "--change", 'CMD ["bash"]', str(BASE_TAR), BASE_IMAGE)


def build_image():
    """Builds the Dockerfile as shipped; podman's layer cache makes a rebuild quick."""
    ensure_base_image()
    podman("build", "--isolation", "chroot", "--format", "docker", "--network", "host",
           "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"NODE_IMAGE={BASE_IMAGE}",
           "-t", IMAGE, str(ROOT), timeout=1800)
    return IMAGE


class ContainerGateway(Gateway):
    """The image run with podman (--network host, so it listens on our loopback port and
    reaches the emulator there); the entrypoint owns lighttpd, otp-fcgi and otp-deleter."""

    stop_deleter = None  # the container runs its deleter; it cannot be stopped alone

    def __init__(self, workdir, bot, env=None, image=IMAGE, extra=()):
        super().__init__(workdir, bot, env)
        self.image, self.extra = image, list(extra)
        self.name = f"otp-test-{uuid.uuid4().hex[:12]}"
        self.started = False

    def container_env(self):
        skip = {"PATH", "OTP_FCGI_BIN", "OTP_RUN_DIR", "OTP_WWW_DIR", "OTP_DB_PATH", "ASAN_OPTIONS"}
        return {k: v for k, v in self.env.items() if k not in skip}

    def start(self, deleter=True):
        args = ["run", "-d", "--name", self.name, *RUN_OPTS, *TMPFS, *self.extra]
        for k, v in self.container_env().items():
            args += ["-e", f"{k}={v}"]
        podman(*args, self.image)
        self.started = True
        wait_until(lambda: self.healthy() or not self.running(), 30 * SLOW, "the container")
        assert self.running(), self.log_text()
        wait_until(self.healthy, 20 * SLOW, "a healthy container")

    def state(self):
        p = podman("inspect", self.name, check=False)
        return json.loads(p.stdout)[0]["State"] if p.returncode == 0 else None

    def running(self):
        s = self.state()
        return bool(s and s["Running"])

    def exit_code(self, timeout=30):
        wait_until(lambda: not self.running(), timeout, "the container to exit", interval=0.2)
        return self.state()["ExitCode"]

    def log_text(self):
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def stop(self):
        if not self.started:
            return
        try:
            if self.running():
                podman("stop", "-t", "30", self.name)
                assert self.state()["ExitCode"] == 0, "SIGTERM stops the container cleanly"
            text = self.log_text()
            assert TOKEN.split(":")[1] not in text
        finally:
            podman("rm", "-f", self.name, check=False)


# conf/kubernetes/otp-gateway.yml under `podman kube play`. What podman 4.3 cannot do with it is
# adapted here, and only that (docs/container.md lists it): a Secret volume crashes podman, so the
# token file is mounted at the same path; the pod shares the host's network to reach the emulator
# on loopback, where podman refuses containerPort (it would publish it), so the probes name the
# port by number; kube play has no --runtime/--ulimit, so they go in a containers.conf.
KUBE_MANIFEST = ROOT / "conf/kubernetes/otp-gateway.yml"


def kube_unavailable():
    """Why podman kube play cannot run here (beyond unavailable()), or None."""
    if not shutil.which("catatonit"):
        return "catatonit is not installed (podman's pod infra container needs it: apt-get install catatonit)"
    return None


class KubeGateway(ContainerGateway):
    """The Deployment of conf/kubernetes/ run by podman kube play; env goes in its ConfigMap."""

    def __init__(self, workdir, bot, env=None, image=IMAGE):
        super().__init__(workdir, bot, env, image)
        self.suffix = "-" + uuid.uuid4().hex[:8]
        self.kube_file = self.dir / "kube.yml"
        conf = self.dir / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
                        '[engine]\nruntime = "runc"\n')
        self.podman_env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.docs = list(yaml.safe_load_all(KUBE_MANIFEST.read_text()))
        kinds = {d["kind"]: d for d in self.docs}
        self.config, self.deploy = kinds["ConfigMap"], kinds["Deployment"]
        self.pod_spec = self.deploy["spec"]["template"]["spec"]
        [self.ctr] = self.pod_spec["containers"]
        self.pod = self.deploy["metadata"]["name"] + self.suffix + "-pod-0"
        self.name = f"{self.pod}-{self.ctr['name']}"
        self.grace = self.pod_spec["terminationGracePeriodSeconds"]

    def pm(self, *args, timeout=300, check=True):
        p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                           env=self.podman_env)
        assert not check or p.returncode == 0, f"podman {' '.join(args[:3])}: {p.stderr[-2000:]}"
        return p

    def write_manifest(self):
        env = self.container_env()
        token = self.dir / "telegram_bot_token"
        token.write_text(env.pop("TELEGRAM_BOT_TOKEN") + "\n")
        token.chmod(0o644)
        self.config["data"].update(env)
        for d in self.docs:
            d["metadata"]["name"] += self.suffix
        ctr = self.ctr
        ctr["image"] = self.image
        ctr["envFrom"][0]["configMapRef"]["name"] += self.suffix
        assert ctr.pop("ports") == [{"name": "http", "containerPort": 55155}]
        for probe in ("readinessProbe", "livenessProbe"):
            ctr[probe]["httpGet"]["port"] = self.port
        [mount] = [m for m in ctr["volumeMounts"] if m["name"] == "token"]
        [vol] = [v for v in self.pod_spec["volumes"] if v["name"] == "token"]
        assert vol["secret"]["secretName"] == "otp-gateway-token"
        vol.clear()
        vol.update(name="token", hostPath={"path": str(token), "type": "File"})
        mount["mountPath"] += "/telegram_bot_token"
        self.kube_file.write_text(yaml.safe_dump_all(self.docs))

    def start(self, deleter=True):
        self.write_manifest()
        self.started = True
        self.pm("kube", "play", "--network", "host", str(self.kube_file))
        wait_until(lambda: self.healthy() or not self.running(), 40 * SLOW, "the pod")
        assert self.running(), self.log_text()
        wait_until(self.healthy, 20 * SLOW, "a healthy pod")

    def state(self):
        p = self.pm("inspect", self.name, check=False)
        return json.loads(p.stdout)[0]["State"] if p.returncode == 0 else None

    def log_text(self):
        p = self.pm("logs", self.name, check=False)
        return p.stdout + p.stderr

    def stop_pod(self):
        """The stop as a cluster does it, with the grace period: podman kube down does not wait."""
        self.pm("pod", "stop", "-t", str(self.grace), self.pod, timeout=self.grace + 60)

    def stop(self):
        if not self.started:
            return
        try:
            if self.running():
                self.stop_pod()
            assert TOKEN.split(":")[1] not in self.log_text()
        finally:
            self.pm("kube", "down", str(self.kube_file), check=False)
