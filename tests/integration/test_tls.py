"""The Bot API over TLS, as Telegram speaks it: the emulator behind nginx with a certificate from
a private CA that the test makes. TELEGRAM_CA_FILE names that CA; sends, deletions, revoke and a
429 work through it; a certificate that does not verify fails the call with a clear detail,
nothing sent and nothing stored; connections are kept and reused, not opened per call; the
decrypted replies (Telegram echoes the code) leave no copy in otp-fcgi's memory."""
from concurrent.futures import ThreadPoolExecutor

import pytest

import tlsfront
from conftest import SLOW, TOKEN, TOKEN_SECRET, wait_until
from test_config_and_run import BASE_ENV, run_program
from test_request_body import distinct_otps, fcgi_pids, memory_holding

pytestmark = pytest.mark.skipif(tlsfront.missing() is not None, reason=str(tlsfront.missing()))


@pytest.fixture
def pki(workdir):
    """The CA the front's certificate comes from, and another one that did not sign it."""
    ca = tlsfront.make_ca(workdir, "private-ca")
    other = tlsfront.make_ca(workdir, "other-ca")
    return {"ca": ca, "other": other, "cert": tlsfront.make_server_cert(workdir, ca)}


@pytest.fixture
def front(workdir, bot, pki):
    f = tlsfront.TlsFront(workdir, bot.port, pki["cert"])
    yield f
    f.stop()


def tls_gateway(make_gateway, front, ca_file, **env):
    return make_gateway(env={"TELEGRAM_API_BASE": front.url, "TELEGRAM_CA_FILE": str(ca_file),
                             **env})


def test_send_and_deletion_over_tls_with_a_private_ca(make_gateway, bot, front, pki):
    gw = tls_gateway(make_gateway, front, pki["ca"][0])
    r = gw.send_otp({"chat_id": "7001", "otp": "482913", "expire_seconds": 5})
    assert r.status == 200, r
    mid = r.json["message_id"]
    assert [m["message_id"] for m in bot.messages("7001")] == [mid]
    wait_until(lambda: bot.messages("7001")[0]["deleted_at"], 12 * SLOW, "the deletion over TLS")
    assert gw.db_rows() == []
    statuses = [c[3] for c in front.calls()]
    assert statuses.count(200) >= 2, "the send and the deletion both went through the TLS front"


def test_revoke_over_tls(make_gateway, bot, front, pki):
    gw = tls_gateway(make_gateway, front, pki["ca"][0])
    r = gw.send_otp({"chat_id": "7002", "otp": "1234", "expire_seconds": 60})
    assert r.status == 200, r
    rv = gw.request("POST", "/revoke-otp", body={"chat_id": "7002", "message_id": r.json["message_id"]},
                    headers={"Content-Type": "application/json"})
    assert rv.status == 200, rv
    assert bot.messages("7002")[0]["deleted_at"]


def test_no_otp_sent_over_tls_stays_in_otp_fcgis_memory(make_gateway, bot, front, pki):
    # OpenSSL decrypts each reply in a read buffer that libcurl has it free once read: a copy of
    # the code unless what OpenSSL frees is wiped
    gw = tls_gateway(make_gateway, front, pki["ca"][0], OTP_FCGI_THREADS="4")
    otps = distinct_otps(20)
    needles = [o.encode() for o in otps]
    assert not memory_holding(fcgi_pids(gw), needles)  # not there by chance
    with ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda i: gw.send_otp({"chat_id": str(7100 + i), "otp": otps[i]}),
                           range(len(otps))))
    assert [r.status for r in rs] == [200] * len(otps), rs
    # each echo came back over TLS (nginx logs a call once it has answered it)
    wait_until(lambda: [c[3] for c in front.calls()].count(200) >= len(otps), 5 * SLOW,
               "the sends in the TLS front's log")
    found = memory_holding(fcgi_pids(gw), needles)
    assert not found, {k.decode(): v for k, v in found.items()}


def test_a_429_over_tls_pauses_sends_with_retry_after(make_gateway, bot, front, pki):
    gw = tls_gateway(make_gateway, front, pki["ca"][0])
    bot.config(flood={"retry_after": 7, "count": 1}, flood_methods=["sendMessage"])
    r = gw.send_otp({"chat_id": "7003", "otp": "1234"})
    assert r.status == 503, r
    assert 1 <= int(r.headers["retry-after"]) <= 7
    assert r.json["success"] is False and r.json["telegram_error_code"] == 429, r.json
    assert bot.messages("7003") == []


@pytest.mark.parametrize("trust", ["another CA", "the system's store"])
def test_a_certificate_that_does_not_verify_fails_with_a_clear_detail(make_gateway, bot, front, pki,
                                                                      trust):
    env = {"TELEGRAM_API_BASE": front.url}
    if trust == "another CA":
        env["TELEGRAM_CA_FILE"] = str(pki["other"][0])
    gw = make_gateway(env=env)
    r = gw.send_otp({"chat_id": "7004", "otp": "559911"})
    assert r.status == 502, r
    assert r.json["success"] is False
    assert r.json["detail"].startswith("the Bot API's certificate is not trusted: "), r.json
    assert TOKEN_SECRET not in r.text and "559911" not in r.text
    assert bot.requests("sendMessage") == [], "nothing reached the Bot API"
    assert bot.messages("7004") == []
    assert gw.db_rows() == [], "nothing stored"
    assert TOKEN_SECRET not in gw.log_text()


def test_connections_are_reused_across_sends_and_deletions(make_gateway, bot, front, pki):
    # lighttpd.conf spawns two otp-fcgi processes. Deletions due together beyond the deleter's
    # steady pool would open connections of their own for the backlog (closed after): the pool
    # holds more than this test's sends make due at once, even on a slow build
    threads, concurrency, processes = 2, 4, 2
    gw = tls_gateway(make_gateway, front, pki["ca"][0], OTP_FCGI_THREADS=str(threads),
                     DELETER_CONCURRENCY=str(concurrency))
    sends = 12
    for i in range(sends):
        r = gw.send_otp({"chat_id": str(7100 + i), "otp": "1234", "expire_seconds": 5})
        assert r.status == 200, r
    wait_until(lambda: all(bot.messages(str(7100 + i))[0]["deleted_at"] for i in range(sends)),
               15 * SLOW, "every deletion over TLS")
    calls = front.calls()
    assert len(calls) >= 2 * sends or len(calls) >= sends + 1, calls
    limit = threads * processes + concurrency
    print(f"{front.handshakes()} TLS connections carried {len(calls)} calls")
    assert 1 <= front.handshakes() <= limit, (
        f"{front.handshakes()} TLS connections for {len(calls)} calls: at most {limit} may be open")


@pytest.mark.parametrize("content, needle", [
    (None, "TELEGRAM_CA_FILE: cannot open"),
    ("not a certificate\n", "holds no PEM certificate"),
])
@pytest.mark.parametrize("program", ["otp-fcgi", "otp-deleter"])
def test_a_bad_ca_file_stops_the_program_naming_it(workdir, program, content, needle):
    path = f"{workdir}/ca.pem"
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
    env = dict(BASE_ENV, OTP_DB_PATH=f"{workdir}/db", TELEGRAM_CA_FILE=path)
    p = run_program(program, env, *(["--check-config"] if program == "otp-fcgi" else []))
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert TOKEN not in p.stderr
