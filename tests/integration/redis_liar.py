"""A Redis server that lies: a small RESP proxy in front of a real redis-server that passes every
command through and, for the calls a test names, replaces the real reply with bytes of its own
(a wrong shape, a wrong type, a huge array), trickles it slowly, or closes the connection half
way. Calls are named by command (GET, LLEN, ...) or, for EVALSHA, by the script's first line
("-- rate_take"), learnt from the SCRIPT LOAD that went through.

    liar = RedisLiar(upstream_unix_socket)      # listens on 127.0.0.1:liar.port
    liar.lie("rate_take", b"*6\\r\\n:0\\r\\n...")  # from now on, for every connection
    liar.lie("rate_take", SLOW, b"...")           # the reply, a byte every SLOW_BYTE_S seconds
    liar.lie("rate_take", CLOSE, b"*6\\r\\n:-1\\r\\n")  # these bytes, then the connection closed
    liar.truth()                                  # back to passing everything through
    liar.lies_told["rate_take"]                   # how many replies were replaced
"""
import socket
import threading

SLOW = "slow"
CLOSE = "close"
SLOW_BYTE_S = 0.5


class Closed(Exception):
    pass


class Conn:
    """A socket read one RESP frame at a time."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        """One frame: (raw bytes, value) with bulk strings as bytes and arrays as lists."""
        line = self._line()
        raw = line + b"\r\n"
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return raw, rest
        n = int(rest)
        if kind == b"$":
            if n < 0:
                return raw, None
            data = self._exact(n + 2)
            return raw + data, data[:-2]
        if kind == b"*":
            items = []
            for _ in range(max(n, 0)):
                r, v = self.frame()
                raw += r
                items.append(v)
            return raw, items if n >= 0 else None
        raise Closed()


class RedisLiar:
    def __init__(self, upstream_socket):
        self.upstream = upstream_socket
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.scripts = {}          # sha -> name
        self.rules = {}            # name -> (mode, bytes)
        self.lies_told = {}
        self.lock = threading.Lock()
        self.open = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, prefix):
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def lie(self, name, mode_or_bytes, data=None):
        mode, data = (None, mode_or_bytes) if data is None else (mode_or_bytes, data)
        with self.lock:
            self.rules[name] = (mode, data)

    def truth(self):
        with self.lock:
            self.rules.clear()

    def stop(self):
        self.stopping = True
        self.server.close()
        for s in list(self.open):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _name(self, args):
        cmd = (args[0] or b"").upper()
        if cmd == b"EVALSHA" and len(args) > 1:
            return self.scripts.get(args[1], "EVALSHA")
        return cmd.decode(errors="replace")

    def _serve(self, client):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.open += [client, up]
        try:
            up.connect(self.upstream)
            c, u = Conn(client), Conn(up)
            while True:
                raw, args = c.frame()
                up.sendall(raw)
                reply, value = u.frame()
                if (args and (args[0] or b"").upper() == b"SCRIPT" and len(args) > 2 and
                        isinstance(value, bytes)):
                    first = args[2].split(b"\n", 1)[0]
                    if first.startswith(b"-- "):
                        self.scripts[value] = first[3:].decode()
                name = self._name(args)
                with self.lock:
                    rule = self.rules.get(name)
                    if rule:
                        self.lies_told[name] = self.lies_told.get(name, 0) + 1
                if rule is None:
                    client.sendall(reply)
                    continue
                mode, data = rule
                if mode == SLOW:
                    for i in range(len(data)):
                        client.sendall(data[i:i + 1])
                        threading.Event().wait(SLOW_BYTE_S)
                    continue
                client.sendall(data)
                if mode == CLOSE:
                    return
        except (Closed, OSError):
            pass
        finally:
            for s in (client, up):
                try:
                    s.close()
                except OSError:
                    pass
