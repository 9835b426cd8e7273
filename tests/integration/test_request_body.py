"""Request bodies (issue #23): a body that trickles in through Apache's mod_proxy_fcgi (which
streams it) holds an otp-fcgi thread at most OTP_BODY_TIMEOUT_SECONDS, and then gets 408 while
other clients are served at normal speed; a request without the API key gets 401 before any of
its body is waited for; and after requests no copy of an OTP sent stays in otp-fcgi's memory
(libfcgi's stdin buffer included)."""
import os
import random
import re
import select
import socket
import threading
import time
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, wait_until

API_KEY = "rb-key-0123456789abcdef"
BODY_TIMEOUT_S = 2
ENV = {"API_KEY": API_KEY, "OTP_FCGI_THREADS": "4",
       "OTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S)}


@pytest.fixture
def apache(make_gateway):
    return make_gateway(env=ENV, frontend="apache")


def dechunk(data):
    out = b""
    while True:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out, data = out + rest[:n], rest[n + 2:]


def read_response(sock, deadline):
    """(status, headers text, body) of one HTTP/1.1 response on sock, read by deadline."""
    data = b""
    while time.monotonic() < deadline:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if m and len(body) >= int(m.group(1)):
                return int(head.split()[1]), head.decode(), body[:int(m.group(1))]
            if re.search(rb"(?im)^transfer-encoding:\s*chunked", head) and \
                    body.endswith(b"0\r\n\r\n"):
                return int(head.split()[1]), head.decode(), dechunk(body)
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head else None), head.decode(errors="replace"), body


def trickle(port, key, first, every=0.3, limit=30.0):
    """POSTs a chunked /send-otp body: `first`, then one byte of JSON whitespace every `every`
    seconds, never the end, until an answer comes. Returns (status, body, seconds from the
    first byte to the answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=limit)
    headers = (b"POST /send-otp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    if key:
        headers += b"X-API-Key: " + key.encode() + b"\r\n"
    start = time.monotonic()
    sent = len(first)
    try:
        sock.sendall(headers + b"\r\n" + b"%x\r\n%s\r\n" % (len(first), first))
        while time.monotonic() - start < limit:
            ready, _, _ = select.select([sock], [], [], every)
            if ready:
                status, _, body = read_response(sock, time.monotonic() + limit)
                return status, body, time.monotonic() - start, sent
            try:
                sock.sendall(b"1\r\n \r\n")
                sent += 1
            except OSError:  # the server closed its side: its answer is waiting
                pass
        raise AssertionError("no answer to a trickling body")
    finally:
        sock.close()


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_trickling_bodies_get_408_within_the_bound_while_others_are_served(apache):
    gw = apache
    trickling = 3  # of OTP_FCGI_THREADS=4 per process
    t0 = time.monotonic()
    with ThreadPoolExecutor(trickling) as pool:
        slow = [pool.submit(trickle, gw.port, API_KEY, b'{"chat_id": "8101", "otp": "1234"')
                for _ in range(trickling)]
        # while they trickle, other clients are answered at normal speed
        times = []
        while not all(f.done() for f in slow) and time.monotonic() - t0 < 20 * SLOW:
            s = time.monotonic()
            r = gw.request("POST", "/send-otp", body={"chat_id": "8102", "otp": "4321"},
                           headers={"Content-Type": "application/json", "X-API-Key": API_KEY})
            times.append(time.monotonic() - s)
            assert r.status == 200, r
            assert gw.get("/health").status == 200
        results = [f.result() for f in slow]
    for status, body, took, sent in results:
        assert status == 408, (status, body)
        assert body == (b'{"detail":"Request body not received within %d seconds"}'
                        % BODY_TIMEOUT_S), body
        # the bound counts from when otp-fcgi starts on the body, just after the first bytes
        assert BODY_TIMEOUT_S - 0.5 <= took <= BODY_TIMEOUT_S + 2 * SLOW, took
        assert sent > 3, sent  # it was still trickling when cut off
    assert len(times) >= 3, times
    assert max(times) < 1.5 * SLOW, times
    # the threads are free again: as many trickling clients once more, and a send after them
    again = [trickle(gw.port, API_KEY, b'{"chat_id": "8103"') for _ in range(1)]
    assert again[0][0] == 408, again
    r = gw.request("POST", "/send-otp", body={"chat_id": "8104", "otp": "5678"},
                   headers={"Content-Type": "application/json", "X-API-Key": API_KEY})
    assert r.status == 200, r
    line = [l for l in gw.log_lines() if l.get("status") == 408]
    assert len(line) == trickling + 1, line


@pytest.mark.serial  # a timing bound that sharing the machine would stretch
def test_a_trickling_body_without_the_key_is_refused_at_once(apache):
    """otp-fcgi answers 401 as soon as the request starts, its body unread. Apache's
    mod_proxy_fcgi hands that answer to the client only once the client has sent its whole
    body (it reads the body to its end in a thread of its own): the client here trickles for
    3 s, then ends its body."""
    for key in (None, "wrong-key"):
        sock = socket.create_connection(("127.0.0.1", apache.port), timeout=20)
        first = b'{"chat_id": "8111", "otp": "1234"'
        head = (b"POST /send-otp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
        if key:
            head += b"X-API-Key: " + key.encode() + b"\r\n"
        before = len([l for l in apache.log_lines() if l.get("status") == 401])
        started = time.time()
        try:
            sock.sendall(head + b"\r\n" + b"%x\r\n%s\r\n" % (len(first), first))
            while time.time() - started < 3:
                time.sleep(0.3)  # the client's pace, not a synchronisation
                sock.sendall(b"1\r\n \r\n")
            # otp-fcgi answered long before the body ends
            lines = [l for l in apache.log_lines() if l.get("status") == 401]
            assert len(lines) == before + 1, lines
            logged = datetime.strptime(lines[-1]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ") \
                .replace(tzinfo=timezone.utc).timestamp()
            assert logged - started < 1.0 * SLOW, (logged, started)
            assert lines[-1]["duration_ms"] < 100, lines[-1]
            sock.sendall(b"1\r\n}\r\n0\r\n\r\n")
            status, _, body = read_response(sock, time.monotonic() + 10 * SLOW)
        finally:
            sock.close()
        assert status == 401, (status, body)
        assert b"Missing or invalid API key" in body, body


def fcgi_pids(gw):
    pids = []
    for pid in gw.children_left():
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "otp-fcgi":
                pids.append(pid)
        except OSError:
            pass
    return pids


# a readable mapping larger than this is a sanitizer's shadow memory (terabytes reserved, no
# program data in it), never a heap or a stack of ours
SCAN_MAPPING_MAX = 1 << 30
SCAN_CHUNK = 1 << 20


def memory_holding(pids, needles):
    """{needle: [pid, ...]} for each needle found in any readable mapping of pids."""
    found = {}
    overlap = max(len(n) for n in needles) - 1
    for pid in pids:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
            for line in maps:
                fields = line.split()
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if "r" not in fields[1] or (len(fields) > 5 and fields[5] == "[vvar]") or \
                        hi - lo > SCAN_MAPPING_MAX:
                    continue
                tail = b""
                for at in range(lo, hi, SCAN_CHUNK):
                    try:
                        mem.seek(at)
                        chunk = tail + mem.read(min(SCAN_CHUNK, hi - at))
                    except OSError:
                        break
                    for n in needles:
                        if n in chunk and pid not in found.get(n, []):
                            found.setdefault(n, []).append(pid)
                    tail = chunk[-overlap:] if overlap > 0 else b""
    return found


def distinct_otps(n):
    """Random 8-digit codes: no other number a test sends or a process holds looks like them."""
    return ["%08d" % random.randrange(10_000_000, 100_000_000) for _ in range(n)]


@pytest.mark.parametrize("frontend", ["lighttpd", "apache"])
def test_no_otp_sent_stays_in_otp_fcgis_memory(make_gateway, bot, frontend):
    # the body's deadline leaves time for the positive control's scans, slower under a sanitizer
    body_timeout_s = int(BODY_TIMEOUT_S * SLOW)
    gw = make_gateway(env={**ENV, "OTP_BODY_TIMEOUT_SECONDS": str(body_timeout_s)},
                      frontend=frontend)
    key = {"Content-Type": "application/json", "X-API-Key": API_KEY}
    otps = distinct_otps(24)
    needles = [o.encode() for o in otps]
    assert not memory_holding(fcgi_pids(gw), needles)  # not there by chance
    with ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda i: gw.request(
            "POST", "/send-otp", body={"chat_id": str(8200 + i), "otp": otps[i]}, headers=key),
            range(len(otps) - 4)))
    assert [r.status for r in rs] == [200] * (len(otps) - 4), rs
    # bodies refused after reading them hold OTPs too: a validation error, a bad JSON
    r = gw.request("POST", "/send-otp", body={"chat_id": "8299", "otp": otps[-4], "x": 1},
                   headers=key)
    assert r.status == 422, r
    r = gw.request("POST", "/send-otp", body='{"chat_id": "8299", "otp": "%s"' % otps[-3],
                   headers=key)
    assert r.status == 422, r
    r = gw.request("POST", "/revoke-otp", body='{"chat_id": "8299", "otp": "%s"}' % otps[-2],
                   headers=key)
    assert r.status == 422, r
    pids = fcgi_pids(gw)
    assert pids
    if frontend == "apache":
        # a positive control: a body still arriving is in otp-fcgi's memory (the scan sees
        # it), and is gone once its request ended with 408
        box = {}
        t = threading.Thread(target=lambda: box.update(r=trickle(
            gw.port, API_KEY, b'{"chat_id": "8298", "otp": "%s"' % needles[-1])))
        t.start()
        wait_until(lambda: needles[-1] in memory_holding(fcgi_pids(gw), [needles[-1]]),
                   body_timeout_s, "the trickling body in otp-fcgi's memory",
                   interval=0.1)
        t.join()
        assert box["r"][0] == 408, box
    else:
        r = gw.request("POST", "/send-otp", body={"chat_id": "8297", "otp": otps[-1]},
                       headers=key)
        assert r.status == 200, r
    # answered: what is left is what the process keeps
    found = memory_holding(fcgi_pids(gw), needles)
    assert not found, {k.decode(): v for k, v in found.items()}
