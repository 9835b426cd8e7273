"""`make install` / `make uninstall` with PREFIX and DESTDIR. That the installed tree serves is
the black-box suite's (test_frontends.py, kind "installed"); here: what goes where, and that
uninstall takes it all away again."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, make_install


def files_under(d):
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if not p.is_dir())


def test_install_puts_every_part_under_prefix_and_uninstall_removes_it(workdir):
    tree = make_install(workdir, "/opt/otp")
    files = files_under(workdir)
    for f in ("opt/otp/bin/otp-fcgi", "opt/otp/bin/otp-deleter",
              "opt/otp/share/man/man8/otp-fcgi.8", "opt/otp/share/man/man8/otp-deleter.8",
              "opt/otp/share/man/man5/otp-gateway.env.5",
              "opt/otp/share/otp-gateway/www/docs.html", "opt/otp/share/otp-gateway/www/openapi.json",
              "opt/otp/share/otp-gateway/lighttpd.conf", "opt/otp/share/otp-gateway/conf/serve.sh",
              "opt/otp/share/otp-gateway/conf/nginx.conf",
              "opt/otp/share/otp-gateway/conf/apache-proxy-fcgi.conf",
              "opt/otp/share/otp-gateway/conf/apache-fcgid.conf",
              "opt/otp/share/otp-gateway/conf/shared-hosting/.htaccess",
              "opt/otp/share/otp-gateway/conf/shared-hosting/otp-gateway.fcgi",
              "opt/otp/share/otp-gateway/conf/shared-hosting/crontab",
              "opt/otp/share/otp-gateway/conf/prometheus/otp-gateway.rules.yml",
              "opt/otp/share/otp-gateway/conf/grafana/otp-gateway.json",
              "opt/otp/lib/systemd/system/otp-deleter.service",
              "opt/otp/lib/systemd/system/otp-fcgi@.service",
              "opt/otp/lib/systemd/system/otp-fcgi@.socket"):
        assert f in files, f
    assert not [f for f in files if "node_modules" in f or f.startswith(("build", "src"))]
    for exe in ("bin/otp-fcgi", "share/otp-gateway/conf/serve.sh",
                "share/otp-gateway/conf/shared-hosting/otp-gateway.fcgi"):
        assert os.access(Path(tree["prefix"]) / exe, os.X_OK), exe
    unit = (Path(tree["prefix"]) / "lib/systemd/system/otp-deleter.service").read_text()
    assert "ExecStart=/opt/otp/bin/otp-deleter\n" in unit, "the unit names PREFIX, not DESTDIR"
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", "deps", f"BUILD={BUILD}", "PREFIX=/opt/otp",
                        f"DESTDIR={workdir}", "uninstall"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [f for f in files_under(workdir) if f.startswith("opt/")] == []


def test_the_settings_man_page_has_every_setting_of_the_docs_and_renders_cleanly(workdir):
    tree = make_install(workdir, "/opt/otp")
    page = Path(tree["prefix"]) / "share/man/man5/otp-gateway.env.5"
    if not shutil.which("groff"):
        pytest.skip("groff is not installed")
    # the page as man shows it (UTF-8 through preconv); any warning of groff's fails
    p = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-ww", "-rLL=200n", str(page)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    shown = re.sub(r".\x08", "", p.stdout)  # no overstrike
    table = (ROOT / "docs/settings.md").read_text().split("| setting |")[1]
    names = [n for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
             for n in re.findall(r"`([A-Z_]+)`", cell)]
    assert len(names) > 30
    # each setting's own line: its name (or two, "MIN_… / MAX_…") alone, under SETTINGS
    settings = shown.split("\nSETTINGS\n")[1]
    tags = " ".join(re.findall(r"^ {7}([A-Z_]+(?: / [A-Z_]+)*)$", settings, re.M))
    for name in names:
        assert re.search(rf"\b{name}\b", tags), f"{name} is not a setting of the page"
    for section in ("NAME", "DESCRIPTION", "SETTINGS", "SEE ALSO"):
        assert re.search(rf"^{section}$", shown, re.M), section
