"""Settings that would be silently wrong are said at start: a token given twice is an error
naming both; an unknown key in the settings file is an error; an unknown setting-like name in
the environment is a warning; a listen address beyond loopback without an API key is a warning."""
import json
import os
import re
from pathlib import Path

import pytest

from conftest import ROOT, TOKEN
from test_config_and_run import BASE_ENV, run_program

PROGRAMS = ["otp-fcgi", "otp-deleter"]


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def check(program, env):
    """Starts program as far as its settings go: otp-fcgi --check-config, otp-deleter for real
    (it would run: callers give it something that stops it at start)."""
    return run_program(program, env, *(["--check-config"] if program == "otp-fcgi" else []))


@pytest.mark.parametrize("program", PROGRAMS)
def test_token_in_the_environment_and_a_token_file_is_an_error_naming_both(workdir, program):
    token_file = Path(workdir) / "token"
    token_file.write_text(TOKEN + "\n")
    env = dict(BASE_ENV, OTP_DB_PATH=f"{workdir}/db", TELEGRAM_BOT_TOKEN_FILE=str(token_file))
    p = check(program, env)
    assert p.returncode == 1, p
    [line] = p.stderr.strip().splitlines()
    assert "TELEGRAM_BOT_TOKEN (set in the environment)" in line
    assert "TELEGRAM_BOT_TOKEN_FILE (set in the environment)" in line
    assert TOKEN.split(":")[1] not in p.stderr + p.stdout, "the token is never echoed"


@pytest.mark.parametrize("program", PROGRAMS)
def test_token_line_in_the_settings_file_and_a_credential_file_is_an_error(workdir, program):
    """systemd's case: LoadCredential hands the token as a file while a copied example
    settings file still holds a token line; one of them would win silently."""
    token_file = Path(workdir) / "credential"
    token_file.write_text("987654:other-token\n")
    settings = Path(workdir) / "otp-gateway.env"
    settings.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nLOG_LEVEL=INFO\n")
    env = {"PATH": os.environ["PATH"], "OTP_ENV_FILE": str(settings),
           "TELEGRAM_BOT_TOKEN_FILE": str(token_file), "TELEGRAM_API_BASE": "http://127.0.0.1:9",
           "OTP_DB_PATH": f"{workdir}/db"}
    p = check(program, env)
    assert p.returncode == 1, p
    [line] = p.stderr.strip().splitlines()
    assert f"TELEGRAM_BOT_TOKEN (set in {settings})" in line
    assert "TELEGRAM_BOT_TOKEN_FILE (set in the environment)" in line
    assert "other-token" not in p.stderr and TOKEN.split(":")[1] not in p.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_unknown_key_in_the_settings_file_stops_the_program_naming_it(workdir, program):
    settings = Path(workdir) / "otp-gateway.env"
    settings.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n# keys\nAPI_KEYS=key-one,key-two\n")
    env = {"PATH": os.environ["PATH"], "OTP_ENV_FILE": str(settings),
           "TELEGRAM_API_BASE": "http://127.0.0.1:9", "OTP_DB_PATH": f"{workdir}/db"}
    p = check(program, env)
    assert p.returncode == 1, p
    [line] = p.stderr.strip().splitlines()
    assert f"{settings}:3: unknown setting API_KEYS" in line
    assert "key-one" not in line


@pytest.mark.parametrize("program", PROGRAMS)
def test_unknown_setting_like_names_in_the_environment_are_a_warning(workdir, program):
    env = dict(BASE_ENV, OTP_DB_PATH=f"{workdir}/db", API_KEYS="key-one",
               TELEGRAM_BOT_TOKN="x", DELETER_POLL="5", OTP_WWW_DIR="/x", LANG_X="y")
    if program == "otp-deleter":
        env["OTP_DB_PATH"] = f"{workdir}/missing/dir/db"  # stops right after the settings
    p = check(program, env)
    warnings = [line for line in json_lines(p.stderr) if line["level"] == "WARNING"
                and "not a setting" in line["message"]]
    assert len(warnings) == 1, p.stderr
    names = set(re.split(r", ", warnings[0]["message"].split(": ", 1)[1]))
    assert names == {"API_KEYS", "TELEGRAM_BOT_TOKN", "DELETER_POLL"}, warnings
    assert "key-one" not in p.stderr, "names, never values"


def test_every_name_the_programs_read_is_a_known_setting():
    """A setting added to the code is also accepted in the settings file (lib/cfg.c SETTINGS)."""
    cfg_c = (ROOT / "lib/cfg.c").read_text()
    table = re.search(r"SETTINGS\[\] = \{(.*?)\};", cfg_c, re.S).group(1)
    known = set(re.findall(r'"([A-Z0-9_]+)"', table))
    read = set()
    for src in [*ROOT.glob("lib/*.c"), *ROOT.glob("fcgi/*.c"), *ROOT.glob("deleter/*.c")]:
        text = src.read_text()
        read |= set(re.findall(r'\b(?:getenv|env|get_int|get_bool)\("([A-Z][A-Z0-9_]+)"', text))
    assert read, "the scan found nothing: its pattern is out of date"
    assert read <= known, f"read but not in SETTINGS: {sorted(read - known)}"


@pytest.mark.parametrize("host, api_key, warned", [
    ("0.0.0.0", None, True), ("127.0.0.1", None, False), ("0.0.0.0", "a-long-key", False)])
def test_listening_beyond_loopback_without_an_api_key_is_a_warning(make_gateway, host, api_key,
                                                                   warned):
    env = {"HOST": host}
    if api_key:
        env["API_KEY"] = api_key
    gw = make_gateway(env=env)
    assert gw.healthy()
    lines = [line for line in gw.log_lines() if line.get("program") == "otp-fcgi"
             and "reachable beyond this machine" in line.get("message", "")]
    assert bool(lines) == warned, lines
    if warned:
        assert lines[0]["level"] == "WARNING" and "HOST=0.0.0.0" in lines[0]["message"]
        assert "API_KEY" in lines[0]["message"]
