"""Rate limits per chat_id (rolling window) and per client address, shared by every process."""
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import SLOW, wait_until


def test_per_chat_limit_answers_429_in_the_originals_words(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "2"})
    for otp in ("1111", "2222"):
        assert gw.send_otp({"chat_id": "500", "otp": otp}).status == 200
    r = gw.send_otp({"chat_id": "500", "otp": "3333"})
    assert r.status == 429, r
    assert r.json == {"detail": "Rate limit exceeded. Maximum 2 OTPs per 1 hour(s)"}
    assert 3590 <= int(r.headers["Retry-After"]) <= 3600
    assert len(bot.requests("sendMessage")) == 2, "a limited request is not sent"
    assert gw.send_otp({"chat_id": "501", "otp": "1111"}).status == 200, "other chats are free"
    assert gw.send_otp({"chat_id": 500, "otp": "4444"}).status == 429, "500 and \"500\" are one chat"


def test_refused_sends_count_and_our_429s_do_not(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "2"})
    bot.config(unknown_chats=["600"])
    assert gw.send_otp({"chat_id": "600", "otp": "1111"}).status == 502
    assert gw.send_otp({"chat_id": "600", "otp": "1111"}).status == 502
    for _ in range(3):
        assert gw.send_otp({"chat_id": "600", "otp": "1111"}).status == 429
    assert gw.db_rows("SELECT count(*) FROM rate_events WHERE scope = 'chat'") == [(2,)]


def test_window_rolls(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "1", "RATE_LIMIT_WINDOW_SECONDS": "2"})
    start = time.monotonic()
    assert gw.send_otp({"chat_id": "700", "otp": "1111"}).status == 200
    r = gw.send_otp({"chat_id": "700", "otp": "1111"})
    assert r.status == 429
    assert r.json["detail"] == "Rate limit exceeded. Maximum 1 OTPs per 2 second(s)"
    assert r.headers["Retry-After"] in ("1", "2")
    wait_until(lambda: gw.send_otp({"chat_id": "700", "otp": "1111"}).status == 200,
               5 * SLOW, "the window to roll", interval=0.1)
    assert time.monotonic() - start >= 1.9


def test_limits_hold_across_fastcgi_processes(make_gateway, bot):
    # one thread per process: concurrent requests must spread over both processes
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "3", "OTP_FCGI_THREADS": "1"})
    bot.config(latency_ms=150)

    def one(i):
        return gw.send_otp({"chat_id": "800", "otp": "1234"}).status

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(one, range(10)))
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 7, statuses
    pids = {line["pid"] for line in gw.log_lines()
            if line.get("message") == "request" and line.get("path") == "/send-otp"}
    assert len(pids) >= 2, f"only {pids} answered: the test did not exercise several processes"


def test_per_ip_limit_counts_per_client_address(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_IP": "3"})
    for chat in ("901", "902", "903"):
        assert gw.send_otp({"chat_id": chat, "otp": "1234"}, source="127.0.0.5").status == 200
    r = gw.send_otp({"chat_id": "904", "otp": "1234"}, source="127.0.0.5")
    assert r.status == 429, r
    assert r.json == {"detail": "Rate limit exceeded. Maximum 3 requests per minute from this IP address"}
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert gw.send_otp({"chat_id": "904", "otp": "1234"}, source="127.0.0.6").status == 200


def test_channel_usernames_are_one_chat_whatever_their_case(make_gateway, bot):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "1"})
    assert gw.send_otp({"chat_id": "@My_Channel", "otp": "1234"}).status == 200
    assert gw.send_otp({"chat_id": "@my_channel", "otp": "1234"}).status == 429
