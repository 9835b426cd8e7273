#!/usr/bin/python3
"""fakebot — a Telegram Bot API emulator for tests, benchmarks and sandbox mode.

Standard library only. Run:  /usr/bin/python3 tests/fakebot/fakebot.py [options]

Options
  --host HOST            address to bind (default 127.0.0.1)
  --port N               port to bind (default 0: a free port)
  --port-file PATH       after binding, write the port number to PATH (via PATH.tmp + rename)
  --token TOKEN          accept only this token (default: any "<digits>:<[A-Za-z0-9_-]+>")
  --latency-ms N         delay before every Bot API answer (default 0)
  --config JSON          initial fault configuration, same keys as POST /_control/config
  --max-log N            keep at most the last N entries in the requests log (default 100000)
  --sandbox-db PATH      the gateway's database, for GET /_control/sandbox (config sandbox_db)
  --verbose              log every HTTP request to stderr
On start it prints "fakebot listening on http://HOST:PORT" to stdout; SIGTERM/SIGINT exit 0.

Bot API:  GET or POST /bot<TOKEN>/<method>; parameters as a JSON body, a form body
(urlencoded or multipart) or the query string. Methods (names case-insensitive, as Telegram):
getMe, sendMessage, deleteMessage, deleteMessages. Answers use Telegram's shapes:
{"ok":true,"result":...} or {"ok":false,"error_code":N,"description":"..."}, HTTP status = N.
sendMessage with parse_mode=HTML validates the markup as Telegram (tdlib) does and stores the
plain text; one deliberate difference: a bare "&" that is not an entity is rejected (Telegram
keeps it as a literal "&"), so that unescaped text is caught in tests. Messages older than 48 h (see /_control/backdate) can't be deleted.

Control API (JSON, same port):
  GET  /_control/health      {"ok":true}
  GET  /_control/config      the current fault configuration
  POST /_control/config      merge any of these keys, answers {"ok":true}:
      "latency_ms": N                      delay before every Bot API answer
      "method_latency_ms": {"sendMessage": N, ...}   per-method delay, replaces latency_ms
      "hang_s": S                          extra sleep of S seconds before each answer (0: off)
      "flood": {"retry_after": N, "duration_s": D}   429 for every call during D seconds
      "flood": {"retry_after": N, "count": C}        429 for the next C calls
               (neither duration_s nor count: until cleared; null clears)
      "flood_methods": ["sendMessage"]     flood only these methods (null or []: all; also
                                           accepted as "methods" inside "flood")
      "server_errors": {"count": C, "status": 502}   the next C calls answer 500/502/503
      "down_s": D                          during D seconds close every Bot API connection
                                           without an answer (0 ends it)
      "close_after_read": {"count": C, "methods": ["sendMessage"]}
                                           the next C calls (of these methods; all without
                                           "methods") are read in full, logged, and their
                                           connection closed without an answer; the call takes
                                           no effect (null clears)
      "canned_replies": {"count": C, "methods": [...], "status": S, "body": "..."}
                                           the next C calls (of these methods) get HTTP status S
                                           (default 200) and body verbatim (a string: it may be
                                           any bytes, not only valid JSON) as a JSON reply; the
                                           call takes no effect (null clears)
      "unknown_chats": ["111"], "blocked_chats": ["222"]   replace the sets
      "reset": true                        empty the messages and the requests log, and go
                                           back to the faults given on the command line
      "sandbox_db": PATH                   the gateway's SQLite file, read (read-only) for the
                                           delete_at of each message (null: none)
  GET  /_control/messages[?chat_id=123]    {"messages":[{"chat_id","message_id","text",
                                           "raw_text","parse_mode","protect_content",
                                           "sent_at","deleted_at"}, ...]}
  POST /_control/backdate  {"chat_id":"123","message_id":1,"seconds":200000}
                                           subtracts seconds from that message's sent_at
  GET  /_control/requests[?method=sendMessage]   {"requests":[{"method","at","answered_at",
                                           "status","params","client_port"}, ...]} in arrival
                                           order ("at": when the kernel received the request);
                                           status is null when the connection was closed;
                                           client_port tells connections apart
  GET  /_control/sandbox[?since=V&wait=S]  what the gateway's /sandbox page shows (read-only):
                                           {"version","now","bot","error","chats":[{"chat_id",
                                           "chat","messages":[{"message_id","text","entities",
                                           "protect_content","sent_at","delete_at",
                                           "first_delete_at","deleted_at"}]}]}; text and
                                           entities as a Telegram
                                           client gets them (entity offsets in UTF-16 units);
                                           delete_at from "sandbox_db", null until its row is
                                           seen; first_delete_at: the earlier one, when it
                                           moved (a revoke), else null. With since, waits up to S seconds (0-25) for a
                                           version after V (long polling). Times: Unix seconds.
Order of the checks for a Bot API call: down, close_after_read, delay (latency + hang),
canned_replies, server_errors, token (401), method (404), flood (429), then the method itself.
"""
import argparse
import collections
import email.parser
import json
import os
import re
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

BOT_NAME, BOT_USERNAME = "OTP Sandbox Bot", "otp_sandbox_bot"
TOKEN_RE = re.compile(r"(\d+):[A-Za-z0-9_-]+")
MAX_TEXT = 4096
MAX_DELETE_AGE = 48 * 3600
SERVER_ERRORS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                 504: "Gateway Timeout"}
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
CONFIG_KEYS = {"latency_ms", "method_latency_ms", "hang_s", "flood", "flood_methods",
               "server_errors", "down_s", "close_after_read", "canned_replies",
               "unknown_chats", "blocked_chats", "reset", "sandbox_db"}
SANDBOX_MAX_WAIT_S = 25      # longest a GET /_control/sandbox?since=... is held open
SANDBOX_LOOKUP_S = 0.1       # how often a held request looks for delete_at in the database
SANDBOX_LOOKUP_FOR_S = 10    # a message without a row after this long is not the gateway's
SANDBOX_MAX_CHATS, SANDBOX_MAX_MESSAGES = 50, 100


class ApiError(Exception):
    """A Bot API error answer."""

    def __init__(self, code, description):
        super().__init__(description)
        self.code, self.description = code, description


def bad_request(what):
    return ApiError(400, "Bad Request: " + what)


# ---------------------------------------------------------------- HTML, as Telegram parses it
HTML_TAGS = {"a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
             "tg-spoiler", "code", "pre", "blockquote"}
HTML_SPACES = " \t\r\n\v\0"
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def decode_entity(text, i):
    """Decode the entity at text[i] == '&' (';' optional, as in tdlib): (char, next i) or None."""
    j, n = i + 1, len(text)
    if j < n and text[j] == "#":
        j += 1
        digits = "0123456789abcdefABCDEF" if j < n and text[j] == "x" else "0123456789"
        base = 16 if len(digits) > 10 else 10
        j += base == 16
        start = j
        while j < n and text[j] in digits:
            j += 1
        if j == start or j - i >= 10:
            return None
        code = int(text[start:j], base)
        if code == 0 or code >= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        char = chr(code)
    else:
        while j < n and text[j].isascii() and text[j].isalpha():
            j += 1
        char = NAMED_ENTITIES.get(text[i + 1:j])
        if char is None:
            return None
    return char, j + 1 if j < n and text[j] == ";" else j


# what each tag becomes in Telegram's message entities
TAG_ENTITIES = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic",
                "u": "underline", "ins": "underline", "s": "strikethrough",
                "strike": "strikethrough", "del": "strikethrough", "span": "spoiler",
                "tg-spoiler": "spoiler", "code": "code", "pre": "pre", "a": "text_link",
                "blockquote": "blockquote"}


def parse_html(text, entities=None):
    """Validate Telegram HTML and return the plain text; raise ValueError(reason) if invalid.
    When entities is a list, the message entities (Telegram's shapes, offsets and lengths in
    UTF-16 code units, as Telegram counts) are appended to it, ordered by offset."""
    out, stack, i, n = [], [], 0, len(text)
    opened = []  # beside stack: (UTF-16 offset where the tag began, its attributes)
    u16 = 0      # UTF-16 length of out

    def emit(s):
        nonlocal u16
        out.append(s)
        u16 += len(s.encode("utf-16-le", "surrogatepass")) // 2

    def at(k):
        return len(text[:k].encode("utf-8", "surrogatepass"))

    def skip_spaces(k):
        while k < n and text[k] in HTML_SPACES:
            k += 1
        return k

    while i < n:
        c = text[i]
        if c == "&":
            decoded = decode_entity(text, i)
            if decoded is None:
                m = re.match(r"&#?[A-Za-z0-9]*;?", text[i:])
                raise ValueError(f'Unsupported HTML entity "{m.group(0)}" at byte offset {at(i)}')
            emit(decoded[0])
            i = decoded[1]
            continue
        if c != "<":
            emit(c)
            i += 1
            continue
        begin = i
        if i + 1 < n and text[i + 1] == "/":  # end tag
            if not stack:
                raise ValueError(f"Unexpected end tag at byte offset {at(begin)}")
            i += 2
            while i < n and text[i] not in HTML_SPACES and text[i] != ">":
                i += 1
            name = text[begin + 2:i].lower()
            i = skip_spaces(i)
            if i >= n or text[i] != ">":
                raise ValueError(f"Unclosed end tag at byte offset {at(begin)}")
            i += 1
            expected = stack.pop()
            if name and name != expected:
                raise ValueError(f'Unmatched end tag at byte offset {at(begin)}, expected '
                                 f'"</{expected}>", found "</{name}>"')
            start, attrs = opened.pop()
            if entities is not None:
                add_entity(entities, expected, start, u16 - start, attrs, opened, stack)
            continue
        i += 1  # start tag
        while i < n and text[i] not in HTML_SPACES and text[i] != ">":
            i += 1
        if i >= n:
            raise ValueError(f"Unclosed start tag at byte offset {at(begin)}")
        name = text[begin + 1:i].lower()
        if name not in HTML_TAGS:
            raise ValueError(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        argument, attrs = "", {}
        while True:  # attributes
            i = skip_spaces(i)
            if i >= n:
                raise ValueError(f'Unclosed start tag "{name}" at byte offset {at(begin)}')
            if text[i] == ">":
                break
            attr_begin = i
            while i < n and text[i] not in HTML_SPACES and text[i] != "=":
                i += 1
            attr = text[attr_begin:i]
            if not attr:
                raise ValueError(f'Empty attribute name in the tag "{name}" at byte offset '
                                 f'{at(begin)}')
            i = skip_spaces(i)
            if i >= n or text[i] != "=":
                raise ValueError(f'Expected equal sign in declaration of an attribute of the '
                                 f'tag "{name}" at byte offset {at(begin)}')
            i = skip_spaces(i + 1)
            if i >= n:
                raise ValueError(f'Unclosed start tag "{name}" at byte offset {at(begin)}')
            if text[i] not in "'\"":  # a name token
                token_begin = i
                while i < n and text[i].isascii() and (text[i].isalnum() or text[i] in ".-"):
                    i += 1
                value = text[token_begin:i].lower()
                if i < n and text[i] not in HTML_SPACES and text[i] != ">":
                    raise ValueError(f"Unexpected end of name token at byte offset "
                                     f"{at(token_begin)}")
            else:  # a quoted string
                quote, chars = text[i], []
                i += 1
                while i < n and text[i] != quote:
                    decoded = decode_entity(text, i) if text[i] == "&" else None
                    if decoded:
                        chars.append(decoded[0])
                        i = decoded[1]
                    else:
                        chars.append(text[i])
                        i += 1
                i += i < n
                value = "".join(chars)
            if i >= n:
                raise ValueError(f"Unclosed start tag at byte offset {at(begin)}")
            if name == "span" and attr == "class" and value.startswith("tg-"):
                argument = value[3:]
            attrs[attr.lower()] = value
        i += 1  # the '>'
        if name == "span" and argument != "spoiler":
            raise ValueError(f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
        stack.append(name)
        opened.append((u16, attrs))
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    if entities is not None:
        entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out)


def add_entity(entities, tag, offset, length, attrs, opened, stack):
    """The entity of a closed tag (none when empty, as Telegram drops those). A <code> with a
    language-* class right inside <pre> gives its language to the pre entity instead."""
    kind = TAG_ENTITIES[tag]
    entity = {"type": kind, "offset": offset, "length": length}
    if kind == "code" and stack and stack[-1] == "pre":
        language = attrs.get("class", "")
        if language.startswith("language-") and len(language) > 9:
            opened[-1][1]["=language"] = language[9:]
            return
    if kind == "pre" and attrs.get("=language"):
        entity["language"] = attrs["=language"]
    if kind == "text_link":
        if not attrs.get("href"):
            return
        entity["url"] = attrs["href"]
    if length > 0:
        entities.append(entity)


def strip_entities(text, entities):
    """(text stripped as sendMessage strips it, the entities moved and clipped to match)."""
    lead = len(text) - len(text.lstrip(" \t\r\n"))
    stripped = text.strip(" \t\r\n")
    end16 = len(stripped.encode("utf-16-le", "surrogatepass")) // 2
    moved = []
    for e in entities:
        start, end = max(0, e["offset"] - lead), min(end16, e["offset"] + e["length"] - lead)
        if end > start:
            moved.append(dict(e, offset=start, length=end - start))
    return stripped, moved


# ---------------------------------------------------------------- state and faults
class State:
    def __init__(self, startup_config, max_log):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when version moves
        self.version = 0  # counts changes to what GET /_control/sandbox shows; never goes back
        self.startup_config, self.max_log = startup_config, max_log
        with self.lock:
            self.clear()
        err = self.configure(startup_config)
        if err:
            raise SystemExit(f"fakebot: --config: {err}")

    def clear(self):
        """Empty store and log, no faults. Caller holds the lock (or is __init__)."""
        self.messages = {}  # (chat key, message id) -> record, in send order
        self.next_id = collections.defaultdict(lambda: 1)
        self.requests = collections.deque(maxlen=self.max_log)
        self.latency_ms, self.method_latency_ms, self.hang_s = 0, {}, 0.0
        self.flood, self.flood_methods = None, set()
        self.server_errors = None  # [count, status]
        self.down_until = 0.0
        self.close_after_read = None  # {"count", "methods"}
        self.canned_replies = None    # {"count", "methods", "status", "body"}
        self.unknown_chats, self.blocked_chats = set(), set()
        self.chats = {}       # chat key -> the chat object sendMessage answered
        self.delete_at = {}   # (chat key, message id) -> the gateway's delete_at (s), once seen
        self.first_delete_at = {}  # the same, where delete_at moved since (a revoke)
        self.sandbox_db = None
        self.touch()

    def touch(self):
        """A change of what GET /_control/sandbox shows: wakes the requests waiting for one.
        Caller holds the lock (or is __init__)."""
        self.version += 1
        self.changed.notify_all()

    def configure(self, cfg):
        """Merge a control-API config object; returns an error string or None."""
        if not isinstance(cfg, dict):
            return "config must be a JSON object"
        unknown = set(cfg) - CONFIG_KEYS
        if unknown:
            return "unknown keys: " + ", ".join(sorted(unknown))
        try:
            with self.lock:
                if cfg.get("reset"):
                    self.clear()
                    self.configure_locked(self.startup_config)
                self.configure_locked(cfg)
        except (TypeError, ValueError, AttributeError) as e:
            return f"bad value: {e}"
        return None

    def configure_locked(self, cfg):
        now = time.time()
        if "latency_ms" in cfg:
            self.latency_ms = float(cfg["latency_ms"] or 0)
        if "method_latency_ms" in cfg:
            self.method_latency_ms = {str(k).lower(): float(v)
                                      for k, v in (cfg["method_latency_ms"] or {}).items()}
        if "hang_s" in cfg:
            self.hang_s = float(cfg["hang_s"] or 0)
        if "flood" in cfg:
            f = cfg["flood"]
            if f:
                self.flood = {"retry_after": int(f.get("retry_after", 1)),
                              "until": now + float(f["duration_s"]) if "duration_s" in f else None,
                              "count": int(f["count"]) if "count" in f else None}
                if "methods" in f:
                    self.flood_methods = {str(m).lower() for m in f["methods"] or []}
            else:
                self.flood = None
        if "flood_methods" in cfg:
            self.flood_methods = {str(m).lower() for m in cfg["flood_methods"] or []}
        if "server_errors" in cfg:
            se = cfg["server_errors"]
            self.server_errors = ([int(se.get("count", 1)), int(se.get("status", 502))]
                                  if se else None)
        if "down_s" in cfg:
            self.down_until = now + float(cfg["down_s"]) if cfg["down_s"] else 0.0
        if "close_after_read" in cfg:
            c = cfg["close_after_read"]
            self.close_after_read = ({"count": int(c.get("count", 1)),
                                      "methods": {str(m).lower() for m in c.get("methods") or []}}
                                     if c else None)
        if "canned_replies" in cfg:
            c = cfg["canned_replies"]
            if c:
                body = c.get("body", "")
                if not isinstance(body, str):
                    raise TypeError("canned_replies.body must be a string")
                self.canned_replies = {"count": int(c.get("count", 1)),
                                       "methods": {str(m).lower() for m in c.get("methods") or []},
                                       "status": int(c.get("status", 200)),
                                       "body": body.encode("utf-8", "surrogateescape")}
            else:
                self.canned_replies = None
        if "unknown_chats" in cfg:
            self.unknown_chats = {str(c) for c in cfg["unknown_chats"] or []}
        if "blocked_chats" in cfg:
            self.blocked_chats = {str(c) for c in cfg["blocked_chats"] or []}
        if "sandbox_db" in cfg:
            self.sandbox_db = str(cfg["sandbox_db"]) if cfg["sandbox_db"] else None
            self.touch()

    def snapshot(self):
        now = time.time()
        with self.lock:
            flood = dict(self.flood) if self.flood else None
            if flood and flood["until"] is not None:
                flood["remaining_s"] = max(0.0, flood["until"] - now)
            return {"latency_ms": self.latency_ms, "method_latency_ms": self.method_latency_ms,
                    "hang_s": self.hang_s, "flood": flood,
                    "flood_methods": sorted(self.flood_methods),
                    "server_errors": dict(zip(("count", "status"), self.server_errors))
                    if self.server_errors else None,
                    "down_remaining_s": max(0.0, self.down_until - now),
                    "close_after_read": self.counted_view(self.close_after_read),
                    "canned_replies": self.counted_view(self.canned_replies),
                    "unknown_chats": sorted(self.unknown_chats),
                    "blocked_chats": sorted(self.blocked_chats)}

    @staticmethod
    def counted_view(fault):
        if not fault:
            return None
        view = {k: v for k, v in fault.items() if k != "body"}
        view["methods"] = sorted(fault["methods"])
        return view

    def take_counted(self, name, method):
        """The fault called name if it applies to this call (consuming one of its count)."""
        with self.lock:
            f = getattr(self, name)
            if not f or f["count"] <= 0 or (f["methods"] and method.lower() not in f["methods"]):
                return None
            f["count"] -= 1
            if f["count"] <= 0:
                setattr(self, name, None)
            return f

    def delay_for(self, method):
        with self.lock:
            ms = self.method_latency_ms.get(method.lower(), self.latency_ms)
            return ms / 1000.0 + self.hang_s

    def take_server_error(self):
        with self.lock:
            if self.server_errors and self.server_errors[0] > 0:
                count, status = self.server_errors
                self.server_errors = [count - 1, status] if count > 1 else None
                return status
        return None

    def take_flood(self, method):
        """retry_after if this call is flooded (consuming one of a counted flood), else None."""
        with self.lock:
            f = self.flood
            if not f or (self.flood_methods and method.lower() not in self.flood_methods):
                return None
            if f["until"] is not None and time.time() >= f["until"]:
                self.flood = None
                return None
            if f["count"] is not None:
                if f["count"] <= 0:
                    self.flood = None
                    return None
                f["count"] -= 1
            return f["retry_after"]


# ---------------------------------------------------------------- Bot API methods
def chat_of(state, params):
    """(key, chat object) for params["chat_id"]; raises the errors Telegram gives."""
    raw = params.get("chat_id")
    if raw is None or raw == "":
        raise bad_request("chat_id is empty")
    s = str(raw).strip() if not isinstance(raw, bool) else ""
    if re.fullmatch(r"-?\d+", s) and int(s) != 0:
        cid = int(s)
        key = str(cid)
        if cid > 0:
            chat = {"id": cid, "first_name": "Sandbox User", "type": "private"}
        else:
            kind = "supergroup" if key.startswith("-100") else "group"
            chat = {"id": cid, "title": f"Sandbox {kind}", "type": kind}
    elif re.fullmatch(r"@[A-Za-z0-9_]+", s):
        key = s
        cid = -(1000000000000 + zlib.crc32(s[1:].lower().encode()) % 1000000000)
        chat = {"id": cid, "title": s[1:], "username": s[1:], "type": "channel"}
    else:
        raise bad_request("chat not found")
    with state.lock:
        unknown = s in state.unknown_chats or key in state.unknown_chats
        blocked = s in state.blocked_chats or key in state.blocked_chats
    if unknown:
        raise bad_request("chat not found")
    if blocked:
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    return key, chat


def as_bool(v):
    return v is True or (isinstance(v, (str, int)) and str(v).lower() in ("true", "1"))


def as_message_id(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    return None


def m_get_me(state, params, bot_id):
    return {"id": bot_id, "is_bot": True, "first_name": BOT_NAME, "username": BOT_USERNAME,
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}


def m_send_message(state, params, bot_id):
    if params.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    raw_text = params.get("text")
    if raw_text is None or raw_text == "":
        raise bad_request("message text is empty")
    raw_text = str(raw_text)
    parse_mode = params.get("parse_mode") or None
    text = raw_text
    if parse_mode is not None:
        mode = str(parse_mode).lower()
        if mode == "html":
            try:
                text = parse_html(raw_text)
            except ValueError as e:
                raise bad_request(f"can't parse entities: {e}")
        elif mode not in ("markdown", "markdownv2"):
            raise bad_request("unsupported parse_mode")
    key, chat = chat_of(state, params)
    text = text.strip(" \t\r\n")
    if not text:
        raise bad_request("message text is empty")
    if len(text.encode("utf-16-le", "surrogatepass")) // 2 > MAX_TEXT:
        raise bad_request("message is too long")
    protect = as_bool(params.get("protect_content"))
    now = time.time()
    with state.lock:
        mid = state.next_id[key]
        state.next_id[key] = mid + 1
        state.messages[(key, mid)] = {
            "chat_id": key, "message_id": mid, "text": text, "raw_text": raw_text,
            "parse_mode": parse_mode, "protect_content": protect,
            "sent_at": now, "deleted_at": None}
        state.chats[key] = chat
        state.touch()
    result = {"message_id": mid,
              "from": {"id": bot_id, "is_bot": True, "first_name": BOT_NAME,
                       "username": BOT_USERNAME},
              "chat": chat, "date": int(now), "text": text}
    if protect:
        result["has_protected_content"] = True
    return result


def delete_one(state, key, mid, now):
    """Delete under the lock: None if done, else the error description."""
    msg = state.messages.get((key, mid))
    if msg is None or msg["deleted_at"] is not None:
        return "message to delete not found"
    if now - msg["sent_at"] > MAX_DELETE_AGE:
        return "message can't be deleted for everyone"
    msg["deleted_at"] = now
    state.touch()
    return None


def m_delete_message(state, params, bot_id):
    if params.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    mid = as_message_id(params.get("message_id"))
    if mid is None:
        raise bad_request("message identifier is not specified")
    key, _ = chat_of(state, params)
    learn_delete_at(state, key, [mid])  # for the sandbox page, which shows it after the deletion
    with state.lock:
        err = delete_one(state, key, mid, time.time())
    if err:
        raise bad_request(err)
    return True


def m_delete_messages(state, params, bot_id):
    if params.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    ids = params.get("message_ids")
    if isinstance(ids, str) and ids.strip():
        try:
            ids = json.loads(ids)
        except ValueError:
            raise bad_request("can't parse message_ids JSON array")
    if not ids:
        raise bad_request("message_ids must be non-empty")
    if not isinstance(ids, list) or any(as_message_id(v) is None for v in ids):
        raise bad_request("message_ids must be an array of integers")
    if len(ids) > 100:
        raise bad_request("too many message identifiers specified")
    key, _ = chat_of(state, params)
    learn_delete_at(state, key, [as_message_id(v) for v in ids])
    now = time.time()
    # as the Bot API: ids not found are skipped (True even when none is found); a message that
    # can't be deleted refuses the whole call, and nothing is deleted
    with state.lock:
        found = [m for m in (state.messages.get((key, as_message_id(v))) for v in ids)
                 if m is not None and m["deleted_at"] is None]
        if any(now - m["sent_at"] > MAX_DELETE_AGE for m in found):
            raise bad_request("message can't be deleted for everyone")
        for m in found:
            m["deleted_at"] = now
        if found:
            state.touch()
    return True


# Telegram's method names are case-insensitive
METHODS = {"getme": m_get_me, "sendmessage": m_send_message,
           "deletemessage": m_delete_message, "deletemessages": m_delete_messages}


# ---------------------------------------------------------------- the sandbox page's view
# GET /_control/sandbox is what the gateway's /sandbox page shows (lighttpd passes
# /sandbox/messages here in sandbox mode): each chat with its messages as a Telegram client
# renders them (plain text and entities), and the delete_at the gateway stored for each, read
# from its database (config "sandbox_db"; Telegram itself never knows it).
def chat_matches(row_chat, key):
    """The store keeps chat_id as the client named it: 123 or "123", @Name in any case."""
    row_chat = str(row_chat)
    if key.startswith("@"):
        return row_chat.lower() == key.lower()
    return re.fullmatch(r"-?\d+", row_chat) is not None and str(int(row_chat)) == key


def learn_delete_at(state, key=None, message_ids=()):
    """Reads the gateway's delete_at from its pending_deletions: for these messages of chat
    key, again (just before they are deleted: the row goes once we confirm, and a revoke has
    moved its delete_at to the revoke's moment), or else for every fresh one that lacks it.
    A change moves the version. Returns an error string, or None."""
    with state.lock:
        db = state.sandbox_db
        if key is not None:
            wanted = [(key, mid) for mid in message_ids]
        else:
            horizon = time.time() - SANDBOX_LOOKUP_FOR_S
            wanted = [k for k, m in state.messages.items() if m["deleted_at"] is None
                      and m["sent_at"] > horizon and k not in state.delete_at]
    if db is None or not wanted:
        return None
    ids = sorted({mid for _, mid in wanted})
    try:
        con = sqlite3.connect(f"file:{quote(db)}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT chat_id, message_id, delete_at_ms FROM pending_deletions"
                               " WHERE message_id IN (%s)" % ",".join("?" * len(ids)),
                               ids).fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"{db}: {e}"
    found = {}
    for k in wanted:
        for chat, mid, at_ms in rows:
            if mid == k[1] and chat_matches(chat, k[0]) and isinstance(at_ms, int):
                found[k] = at_ms / 1000.0
    with state.lock:
        changed = {k: at for k, at in found.items() if state.delete_at.get(k) != at}
        for k, at in changed.items():
            if k in state.delete_at:
                state.first_delete_at.setdefault(k, state.delete_at[k])
            state.delete_at[k] = at
        if changed:
            state.touch()
    return None


def sandbox_view(state, since, wait_s):
    """Waits up to wait_s for the version to pass since, then returns the page's view. While a
    fresh message lacks its delete_at (the gateway writes its row right after our answer),
    looks for it every SANDBOX_LOOKUP_S."""
    deadline = time.monotonic() + wait_s
    error = learn_delete_at(state)
    while True:
        with state.lock:
            horizon = time.time() - SANDBOX_LOOKUP_FOR_S
            pending = state.sandbox_db is not None and any(
                m["deleted_at"] is None and m["sent_at"] > horizon and k not in state.delete_at
                for k, m in state.messages.items())
            left = deadline - time.monotonic()
            if state.version > since or left <= 0:
                return view_locked(state, error)
            state.changed.wait(min(left, SANDBOX_LOOKUP_S) if pending else left)
        if pending:
            error = learn_delete_at(state)


def view_locked(state, error):
    chats = collections.OrderedDict()
    for (key, mid), m in state.messages.items():
        chats.setdefault(key, []).append(((key, mid), m))
    out = []
    for key, msgs in list(chats.items())[-SANDBOX_MAX_CHATS:]:
        shown = []
        for k, m in msgs[-SANDBOX_MAX_MESSAGES:]:
            text, entities = m["text"], []
            if str(m["parse_mode"] or "").lower() == "html":
                try:
                    text, entities = strip_entities(parse_html(m["raw_text"], entities), entities)
                except ValueError:  # it was accepted when sent, so it parses
                    text, entities = m["text"], []
            shown.append({"message_id": m["message_id"], "text": text, "entities": entities,
                          "protect_content": m["protect_content"], "sent_at": m["sent_at"],
                          "delete_at": state.delete_at.get(k),
                          "first_delete_at": state.first_delete_at.get(k),
                          "deleted_at": m["deleted_at"]})
        out.append({"chat_id": key, "chat": state.chats.get(key, {}), "messages": shown})
    return {"version": state.version, "now": time.time(),
            "bot": {"first_name": BOT_NAME, "username": BOT_USERNAME},
            "error": error, "chats": out}


# ---------------------------------------------------------------- HTTP
def api_error(code, description, retry_after=None):
    body = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return code, body


NOT_FOUND = api_error(404, "Not Found")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def version_string(self):
        return "fakebot/1.0"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fakebot: %s %s\n" % (self.address_string(), fmt % args))

    def handle_one_request(self):
        # The moment the request reached this host, as the kernel stamped it: what Telegram
        # would see as the call's time, however late this thread gets to run. (Peeking blocks
        # until the next request arrives; clients here do not pipeline.)
        self.arrived_at = None
        try:
            _, anc, _, _ = self.connection.recvmsg(1, 64, socket.MSG_PEEK)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    self.arrived_at = sec + nsec / 1e9
        except OSError:
            pass
        super().handle_one_request()

    def parse_request(self):
        if self.arrived_at is None:
            self.arrived_at = time.time()
        return super().parse_request()

    def do_GET(self):
        try:
            self.dispatch()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_POST = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def parse_params(self, query, body):
        """Query-string parameters, overridden by those of the body. Raises ApiError."""
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type", "").lower()
        if not body:
            return params
        if "json" in ctype or (not ctype and body.lstrip()[:1] == b"{"):
            try:
                obj = json.loads(body)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                raise bad_request("can't parse JSON object")
            params.update(obj)
        elif ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            for part in msg.get_payload() if msg.is_multipart() else []:
                name = part.get_param("name", header="content-disposition")
                if name:
                    params[name] = part.get_payload(decode=True).decode("utf-8", "replace")
        else:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[0] for k, v in form.items()})
        return params

    def send_json(self, status, obj, headers=()):
        self.send_raw(status, json.dumps(obj, ensure_ascii=False,
                                         separators=(",", ":")).encode("utf-8"), headers)

    def send_raw(self, status, data, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self):
        url = urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/_control/"):
            return self.control(url.path[len("/_control/"):], url.query, body)
        m = re.fullmatch(r"/bot([^/]*)/?(.*)", url.path)
        if not m:
            return self.send_json(*NOT_FOUND)
        self.bot_call(m.group(1), m.group(2), url.query, body)

    def bot_call(self, token, method, query, body):
        state = self.server.state
        entry = {"method": method, "at": self.arrived_at, "answered_at": None, "status": None,
                 "params": {}, "client_port": self.client_address[1]}
        try:
            entry["params"] = self.parse_params(query, body)
            parse_error = None
        except ApiError as e:
            parse_error = e
        with state.lock:
            state.requests.append(entry)
            down = time.time() < state.down_until
        if down or state.take_counted("close_after_read", method):  # no answer at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            with state.lock:
                entry["answered_at"] = time.time()
            return
        delay = state.delay_for(method)
        if delay > 0:
            time.sleep(delay)
        canned = state.take_counted("canned_replies", method)
        if canned:
            status = canned["status"]
        else:
            status, answer = self.answer(token, method, entry["params"], parse_error)
        # recorded before the answer leaves: a test that reads the record as soon as the
        # gateway has the answer must find it (recorded after, a loaded machine let the test
        # win the race and read status None)
        with state.lock:
            entry["answered_at"] = time.time()
            entry["status"] = status
        sent = False
        try:
            if canned:
                self.send_raw(status, canned["body"])
            else:
                self.send_json(status, answer)
            sent = True
        finally:
            if not sent:
                with state.lock:
                    entry["status"] = None

    def answer(self, token, method, params, parse_error):
        state, server = self.server.state, self.server
        error_status = state.take_server_error()
        if error_status is not None:
            return api_error(error_status, SERVER_ERRORS.get(error_status, "Server Error"))
        tm = TOKEN_RE.fullmatch(token)
        if not tm:
            return api_error(401, "Unauthorized: invalid token specified")
        if server.token is not None and token != server.token:
            return api_error(401, "Unauthorized")
        if method.lower() not in METHODS:
            return NOT_FOUND
        retry_after = state.take_flood(method)
        if retry_after is not None:
            return api_error(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        if parse_error is not None:
            return api_error(parse_error.code, parse_error.description)
        try:
            return 200, {"ok": True,
                         "result": METHODS[method.lower()](state, params, int(tm.group(1)))}
        except ApiError as e:
            return api_error(e.code, e.description)

    def control(self, what, query, body):
        state = self.server.state
        q = {k: v[0] for k, v in parse_qs(query).items()}
        post, req = self.command == "POST", {}
        if post and what in ("config", "backdate"):
            try:
                req = json.loads(body) if body.strip() else {}
            except ValueError:
                return self.send_json(400, {"ok": False, "description": "body is not JSON"})
        if what == "health":
            return self.send_json(200, {"ok": True})
        if what == "config" and post:
            err = state.configure(req)
            return self.send_json(400 if err else 200,
                                  {"ok": False, "description": err} if err else {"ok": True})
        if what == "config":
            return self.send_json(200, state.snapshot())
        if what == "messages":
            with state.lock:
                msgs = [dict(m) for m in state.messages.values()
                        if "chat_id" not in q or m["chat_id"] == q["chat_id"]]
            return self.send_json(200, {"messages": msgs})
        if what == "sandbox":
            try:
                since = int(q.get("since", "-1"))
                wait_s = float(q.get("wait", "0"))
                if not 0 <= wait_s <= SANDBOX_MAX_WAIT_S:
                    raise ValueError
            except ValueError:
                return self.send_json(400, {"ok": False, "description": "bad since or wait"})
            return self.send_json(200, sandbox_view(state, since, wait_s),
                                  (("Cache-Control", "no-store"),))
        if what == "requests":
            with state.lock:
                reqs = [dict(r) for r in state.requests
                        if "method" not in q or r["method"].lower() == q["method"].lower()]
            return self.send_json(200, {"requests": reqs})
        if what == "backdate" and post and isinstance(req, dict):
            try:
                seconds = float(req.get("seconds", 0))
            except (TypeError, ValueError):
                return self.send_json(400, {"ok": False, "description": "bad seconds"})
            key = (str(req.get("chat_id")), as_message_id(req.get("message_id")))
            with state.lock:
                msg = state.messages.get(key)
                if msg is not None:
                    msg["sent_at"] -= seconds
                    sent_at = msg["sent_at"]
                    state.touch()
            if msg is None:
                return self.send_json(404, {"ok": False, "description": "no such message"})
            return self.send_json(200, {"ok": True, "sent_at": sent_at})
        return self.send_json(404, {"ok": False, "description": "unknown control endpoint"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False     # do not wait for hung handlers on exit
    request_queue_size = 1024  # the default 5 makes bursts of connections stall for 1 s

    def server_bind(self):
        # accepted connections inherit it: every request gets the kernel's arrival time
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        super().server_bind()


def main():
    ap = argparse.ArgumentParser(description="Telegram Bot API emulator (see the docstring).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--config", default="{}", help="JSON, as POST /_control/config")
    ap.add_argument("--max-log", type=int, default=100000)
    ap.add_argument("--sandbox-db")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    # hand the interpreter lock over every 0.5 ms (not 5): arrival times stay accurate while
    # dozens of connections are served at once
    sys.setswitchinterval(0.0005)
    try:
        config = json.loads(args.config)
    except ValueError as e:
        ap.error(f"--config: {e}")
    if isinstance(config, dict) and args.latency_ms and "latency_ms" not in config:
        config["latency_ms"] = args.latency_ms
    if isinstance(config, dict) and args.sandbox_db and "sandbox_db" not in config:
        config["sandbox_db"] = args.sandbox_db
    if args.token is not None and not TOKEN_RE.fullmatch(args.token):
        ap.error("--token must look like <digits>:<letters, digits, _ or ->")

    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        sys.exit(f"fakebot: cannot bind {args.host}:{args.port}: {e}")
    server.state = State(config, args.max_log)
    server.token, server.verbose = args.token, args.verbose
    port = server.server_address[1]

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    host = f"[{args.host}]" if ":" in args.host else args.host
    try:
        print(f"fakebot listening on http://{host}:{port}", flush=True)
    except OSError:  # nobody reads stdout: fine
        pass
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
