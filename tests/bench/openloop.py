"""An open-loop load generator for POST /send-otp (or any path) (wrk2 is not in Debian; wrk is closed-loop).

Request i is due at start + i/rate whatever happened to the earlier ones: a slow server gets
more requests in flight, not fewer requests (no coordinated omission). Each request goes out on
an idle kept-alive connection, or a new one when none is idle; its latency is counted from the
moment it was due, so a late start (the generator's own lag included) counts against it.

Every request is for a distinct chat. Python's asyncio (uvloop when installed) is enough for a
few thousand requests a second; the benchmark prints how late the generator itself was.
"""
import asyncio
import time

try:
    import uvloop
except ImportError:  # plain asyncio is slower but works
    uvloop = None


class Result:
    def __init__(self):
        self.statuses = {}      # HTTP status (or "timeout", "error", "not sent") -> count
        self.latencies = []     # seconds from due to answered, 200 answers only
        self.all_latencies = []  # every answer, whatever its status
        self.max_in_flight = 0
        self.max_late = 0.0     # the most the generator itself started a request late

    def count(self, key):
        self.statuses[key] = self.statuses.get(key, 0) + 1


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status, close


async def _run(host, port, path, rate, seconds, body_for, timeout, max_in_flight):
    res = Result()
    idle = []
    in_flight = 0
    tasks = set()

    def reusable():
        """An idle connection the server has not closed, or None."""
        while idle:
            conn = idle.pop()
            if not conn[0].at_eof():
                return conn
            _close(conn)
        return None

    async def one(i, due):
        nonlocal in_flight
        in_flight += 1
        res.max_in_flight = max(res.max_in_flight, in_flight)
        conn = None
        try:
            body = body_for(i)
            req = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
            try:
                async with asyncio.timeout(timeout):  # Python 3.11 (Debian 12)
                    conn = reusable()
                    if conn is not None:
                        try:  # the server may have closed it meanwhile: then once more, afresh
                            conn[1].write(req)
                            status, close = await _read_response(conn[0])
                        except (ConnectionError, asyncio.IncompleteReadError) as e:
                            if isinstance(e, asyncio.IncompleteReadError) and e.partial:
                                raise
                            _close(conn)
                            conn = None
                    if conn is None:
                        conn = await asyncio.open_connection(host, port)
                        conn[1].write(req)
                        status, close = await _read_response(conn[0])
            except (asyncio.TimeoutError, TimeoutError):
                res.count("timeout")
                _close(conn)
                return
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                res.count("error")
                _close(conn)
                return
            took = time.monotonic() - due
            res.count(status)
            res.all_latencies.append(took)
            if status == 200:
                res.latencies.append(took)
            if close:
                _close(conn)
            else:
                idle.append(conn)
        finally:
            in_flight -= 1

    loop = asyncio.get_running_loop()
    start = time.monotonic() + 0.05
    total = int(rate * seconds)
    i = 0
    while i < total:
        now = time.monotonic()
        while i < total and start + i / rate <= now:
            due = start + i / rate
            res.max_late = max(res.max_late, now - due)
            if in_flight >= max_in_flight:  # at most as many sockets: idle ones are reused first
                res.count("not sent")
            else:
                t = loop.create_task(one(i, due))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
    if tasks:
        await asyncio.wait(list(tasks))
    for conn in idle:
        _close(conn)
    return res


def _close(conn):
    if conn is not None:
        try:
            conn[1].close()
        except Exception:
            pass


def run(host, port, rate, seconds, body_for, timeout=10.0, max_in_flight=4000, path="/send-otp"):
    """POSTs rate*seconds requests to path, request i due at i/rate; body_for(i) gives its body
    (bytes). Returns a Result once every request is answered or timed out."""
    coro = _run(host, port, path, rate, seconds, body_for, timeout, max_in_flight)
    if uvloop is not None:
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    return asyncio.run(coro)
