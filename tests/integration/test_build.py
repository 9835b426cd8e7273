"""The build (issue #14): `make` as an unprivileged user never installs packages, `make clean`
honours BUILD, and each program links only the libraries it uses."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT

NOBODY = 65534


def needed(binary):
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_each_program_links_only_what_it_uses(tmp_path):
    # the link command (a linker with --as-needed would drop an unused -lfcgi on its own)
    p = subprocess.run(["make", "-n", f"BUILD={tmp_path}/b", f"{tmp_path}/b/otp-deleter"],
                       cwd=ROOT, env={"PATH": os.environ["PATH"]}, capture_output=True,
                       text=True, timeout=60, check=True)
    link = [line for line in p.stdout.splitlines() if "-o " + f"{tmp_path}/b/otp-deleter " in line]
    assert len(link) == 1, p.stdout[-2000:]
    assert "-lfcgi" not in link[0], link[0]
    # and the binary
    deleter = needed(BUILD / "otp-deleter")
    fcgi = needed(BUILD / "otp-fcgi")
    assert any(n.startswith("libfcgi.") for n in fcgi), fcgi
    assert not any(n.startswith("libfcgi.") for n in deleter), f"otp-deleter links libfcgi: {deleter}"
    for lib in ("libsqlite3.", "libcurl.", "libjansson."):
        assert any(n.startswith(lib) for n in deleter), (lib, deleter)


def test_the_bot_api_reply_reading_links_without_the_transport():
    # tg_reply and tg_request are pure: their unit tests (and the reply fuzzers, by the same
    # rule) link jansson alone, no libcurl, no store
    t = BUILD / "tests" / "test_tg_reply"
    if not t.exists():
        pytest.skip(f"{t} is not built (make unit)")
    libs = needed(t)
    assert any(n.startswith("libjansson.") for n in libs), libs
    for lib in ("libcurl.", "libsqlite3.", "libhiredis.", "libfcgi."):
        assert not any(n.startswith(lib) for n in libs), (lib, libs)


def test_make_builds_as_an_unprivileged_user_without_installing_and_clean_honours_build(workdir):
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root (as a user, `make` already runs as one)")
    tree = Path(workdir) / "tree"
    for d in ("lib", "fcgi", "deleter", "docs", "tests/unit", "tests/fuzz"):
        shutil.copytree(ROOT / d, tree / d)
    shutil.copy(ROOT / "Makefile", tree / "Makefile")
    # a package installer that fails: a build that calls it fails
    (tree / ".ci").mkdir()
    (tree / ".ci/install-deps").write_text("#!/bin/sh\necho install-deps was called >&2\nexit 1\n")
    (tree / ".ci/install-deps").chmod(0o755)
    (tree / "build/keep").mkdir(parents=True)
    out = Path(workdir) / "out"
    out.mkdir()
    os.chmod(workdir, 0o755)
    os.chown(out, NOBODY, NOBODY)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(out)}  # no MAKEFLAGS from above
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    b = out / "b"
    p = subprocess.run(as_nobody + ["make", "-j2", f"BUILD={b}"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "install-deps was called" not in p.stderr
    assert (b / "otp-fcgi").exists() and (b / "otp-deleter").exists()
    assert not any(n.startswith("libfcgi.") for n in needed(b / "otp-deleter"))

    # `make test` and `make run` still install first
    p = subprocess.run(["make", "-n", "test", f"BUILD={b}"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=60)
    assert ".ci/install-deps" in p.stdout.splitlines()[0], p.stdout[:500]

    p = subprocess.run(as_nobody + ["make", "clean", f"BUILD={b}"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert not b.exists(), "make clean BUILD=... removes that tree"
    assert (tree / "build/keep").is_dir(), "and leaves the default build directory alone"
