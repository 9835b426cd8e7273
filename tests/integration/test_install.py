"""`make install` / `make uninstall` with PREFIX and DESTDIR. That the installed tree serves is
the black-box suite's (test_frontends.py, kind "installed"); here: what goes where, and that
uninstall takes it all away again."""
import os
import subprocess
from pathlib import Path

from conftest import BUILD, ROOT, make_install


def files_under(d):
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if not p.is_dir())


def test_install_puts_every_part_under_prefix_and_uninstall_removes_it(workdir):
    tree = make_install(workdir, "/opt/otp")
    files = files_under(workdir)
    for f in ("opt/otp/bin/otp-fcgi", "opt/otp/bin/otp-deleter",
              "opt/otp/share/man/man8/otp-fcgi.8", "opt/otp/share/man/man8/otp-deleter.8",
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
