"""The API docs: /docs, /redoc and /openapi.json as lighttpd serves them, the document passing a
real linter (@redocly/cli), and every answer of the live gateway valid against the schema that
www/openapi.json gives for its path, method and status (with python3-jsonschema, draft 2020-12,
the dialect of OpenAPI 3.1)."""
import json
import os
import re
import shutil
import subprocess

import jsonschema  # Debian's python3-jsonschema (.ci/install-deps)
import pytest

from conftest import ROOT

WWW = ROOT / "www"
SPEC = json.loads((WWW / "openapi.json").read_text())
JSON = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_assets():
    """Runs www/build-assets.sh (npm ci when the lock changed, then www/vendor/); skips the test
    when node or npm is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (.ci/install-deps installs them)")
    r = subprocess.run([str(WWW / "build-assets.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"www/build-assets.sh failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def assets():
    build_assets()


# --- the document as a schema source ---------------------------------------------------------

def deref(node):
    """Follows local $refs ("#/components/...") until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target = SPEC
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def documented_response(path, method, status):
    op = SPEC["paths"][path][method.lower()]
    assert str(status) in op["responses"], \
        f"{method} {path} answered {status}, which openapi.json does not document"
    return deref(op["responses"][str(status)])


def validate(instance, schema):
    """Validates against a schema of the document: its $refs resolve inside the document."""
    root = dict(schema, components=SPEC["components"])
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator(root).validate(instance)


def check_answer(r, path, method):
    """r (a conftest Response) is what openapi.json says operation `method path` answers with
    r.status: its content type, its body against the schema of that status, its documented
    headers. Returns the body."""
    resp = documented_response(path, method, r.status)
    [(media, content)] = resp["content"].items()
    assert r.headers["Content-Type"] == media, (r, r.headers["Content-Type"], media)
    body = r.json if media == JSON else r.text
    assert body is not None, f"{method} {path} {r.status}: not JSON: {r.text[:200]}"
    validate(body, content["schema"])
    for name, header in resp.get("headers", {}).items():
        header = deref(header)
        value = r.headers.get(name)
        if header.get("required"):
            assert value is not None, f"{method} {path} {r.status} without {name}"
        if value is not None:
            if header["schema"].get("type") == "integer":
                assert re.fullmatch(r"[0-9]+", value), f"{name}: {value!r}"
                value = int(value)
            validate(value, header["schema"])
    return body


def check_not_found(r):
    """Unknown paths are not operations of the document: their 404 is its HTTPError."""
    assert r.status == 404, r
    assert r.headers["Content-Type"] == JSON, r.headers
    validate(r.json, {"$ref": "#/components/schemas/HTTPError"})


def send(gw, path, body, ctype=JSON, method="POST"):
    if method in ("GET", "HEAD"):  # lighttpd refuses a GET with a body (400)
        return gw.request(method, path)
    return gw.request(method, path, body=body, headers={"Content-Type": ctype})


# --- what lighttpd serves --------------------------------------------------------------------

def test_docs_redoc_and_openapi_json_answer_200_in_place(gateway, assets):
    for path, ctype, needle in [("/docs", "text/html; charset=utf-8", "swagger-ui-bundle.js"),
                                ("/redoc", "text/html; charset=utf-8", "redoc.standalone.js"),
                                ("/docs?x=1", "text/html; charset=utf-8", "SwaggerUIBundle(")]:
        r = gateway.get(path)
        assert r.status == 200, (path, r)  # http.client follows no redirect: 200 is in place
        assert r.headers["Content-Type"] == ctype, (path, r.headers)
        assert needle in r.text, path
    r = gateway.get("/openapi.json")
    assert r.status == 200, r
    assert r.headers["Content-Type"] == JSON
    assert r.json == SPEC


def test_every_file_the_pages_load_is_served_from_vendor(gateway, assets):
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".png": "image/png"}
    for page in ("/docs", "/redoc"):
        refs = re.findall(r'(?:src|href)="([^"]+)"', gateway.get(page).text)
        assert refs, page
        for ref in refs:
            assert not re.match(r"[a-z]+:|//", ref), f"{page} loads {ref} from elsewhere"
            r = gateway.get("/" + ref)
            assert r.status == 200, (page, ref, r.status)
            assert r.headers["Content-Type"] == types[os.path.splitext(ref)[1]], ref
            assert int(r.headers["Content-Length"]) > 0


@pytest.mark.parametrize("method, path", [
    ("GET", "/docs/"), ("GET", "/redoc/x"), ("GET", "/vendor/missing.js"), ("GET", "/vendor/"),
    ("GET", "/package.json"), ("GET", "/node_modules/redoc/package.json"),
    ("GET", "/build-assets.sh"), ("GET", "/openapi.jsonx"),
    ("POST", "/docs"), ("POST", "/openapi.json"), ("DELETE", "/redoc"),
])
def test_other_paths_and_methods_near_the_docs_are_otp_fcgis_json_404(gateway, method, path):
    check_not_found(send(gateway, path, "{}", method=method))


def test_the_api_paths_still_reach_otp_fcgi(gateway):
    for path in ("/nope", "/health/", "/send-otpX"):
        check_not_found(gateway.get(path))
    assert gateway.get("/").json["docs"] == "/docs"


# --- the document itself ---------------------------------------------------------------------

def test_openapi_json_passes_redocly_lint(assets):
    cli = WWW / "node_modules" / ".bin" / "redocly"
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    r = subprocess.run([str(cli), "lint", "--config", str(WWW / "redocly.yaml"),
                        str(WWW / "openapi.json")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=WWW)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Your API description is valid" in out, out
    assert not re.search(r"\b(error|warning)s?\b was generated", out), out


def test_document_describes_the_whole_api():
    assert SPEC["openapi"].startswith("3.1")
    assert SPEC["info"]["title"] == "OTP Social Gateway" and SPEC["info"]["version"] == "1.0.0"
    assert SPEC["servers"] == [{"url": "/", "description": "this gateway"}]
    ops = {(p, m) for p, item in SPEC["paths"].items() for m in item}
    assert ops == {("/send-otp", "post"), ("/revoke-otp", "post"), ("/", "get"), ("/health", "get"),
                   ("/metrics", "get")}
    statuses = set(SPEC["paths"]["/send-otp"]["post"]["responses"])
    assert statuses == {"200", "401", "405", "408", "413", "415", "422", "429", "500", "502",
                        "503", "504"}
    key = SPEC["components"]["securitySchemes"]["ApiKey"]
    assert key["in"] == "header" and key["name"] == "X-API-Key"
    assert {} in SPEC["paths"]["/send-otp"]["post"]["security"], "a key only when API_KEY is set"
    revoke = SPEC["paths"]["/revoke-otp"]["post"]
    assert set(revoke["responses"]) == {"200", "202", "401", "404", "405", "408", "413", "415",
                                        "422", "429", "500"}
    assert revoke["security"] == SPEC["paths"]["/send-otp"]["post"]["security"]
    assert SPEC["components"]["schemas"]["RevokeOtpRequest"]["additionalProperties"] is False
    assert set(SPEC["paths"]["/health"]["get"]["responses"]) == {"200", "405", "503"}
    assert set(SPEC["paths"]["/metrics"]["get"]["responses"]) == {"200", "405", "500"}
    assert list(SPEC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [METRICS_TYPE]
    request = SPEC["components"]["schemas"]["SendOtpRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["otp"]["pattern"] == "^[0-9]{4,8}$"
    assert request["properties"]["expire_seconds"]["type"] == ["integer", "null"]
    for status in ("429", "503"):
        assert "Retry-After" in SPEC["paths"]["/send-otp"]["post"]["responses"][status]["headers"]


def test_every_example_in_the_document_matches_its_schema():
    checked = 0
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            bodies = [deref(op["requestBody"])] if "requestBody" in op else []
            bodies += [deref(resp) for resp in op["responses"].values()]
            for body in bodies:
                for media, content in body.get("content", {}).items():
                    examples = [deref(e)["value"] for e in content.get("examples", {}).values()]
                    if "example" in content:
                        examples.append(content["example"])
                    assert examples, f"{method} {path} {media}: no example"
                    for example in examples:
                        validate(example, content["schema"])
                        checked += 1
    for name, schema in SPEC["components"]["schemas"].items():
        for part in [schema] + list(schema.get("properties", {}).values()):
            for alternative in [part] + part.get("anyOf", []):
                for example in alternative.get("examples", []):
                    validate(example, alternative)
                    checked += 1
    assert checked > 30


# --- live answers against the document -------------------------------------------------------

def test_send_otp_success_matches_its_schema(gateway, bot):
    for body in [{"chat_id": "123456789", "otp": "483920", "expire_seconds": 30},
                 {"chat_id": 123456789, "otp": "4839"},
                 {"chat_id": "-1001234567890", "otp": "12345678", "expire_seconds": None},
                 {"chat_id": "@my_channel", "otp": "1234", "expire_seconds": 5}]:
        validate(body, SPEC["components"]["schemas"]["SendOtpRequest"])
        r = gateway.send_otp(body)
        assert r.status == 200, r
        answer = check_answer(r, "/send-otp", "POST")
        assert answer["chat_id"] == str(body["chat_id"])
    assert len(bot.messages()) == 4


# What the server answers 422; the document's request schema rejects each as well, except 30.0:
# JSON Schema cannot tell 30.0 from 30 (the description says "not a float").
INVALID_BODIES = [
    {},
    {"chat_id": "1", "otp": "12a4"},
    {"chat_id": "1", "otp": "123"},
    {"chat_id": "1", "otp": 1234},
    {"chat_id": "1", "otp": "1234", "expire_seconds": 61},
    {"chat_id": "1", "otp": "1234", "expire_seconds": "30"},
    {"chat_id": "abc", "otp": "1234"},
    {"chat_id": "@abc", "otp": "1234"},
    {"chat_id": True, "otp": "1234"},
    {"chat_id": "1", "otp": "1234", "message": "hi"},
    '{"chat_id": "1", "otp": "1234", "expire_seconds": 30.0}',
    '{"chat_id": "1", "otp": ',
    '{"chat_id": "1", "otp": "1234", "expire_seconds": 99999999999999999999}',
    '["chat_id"]',
]


def test_request_errors_match_their_schemas(gateway, bot):
    request_schema = SPEC["components"]["schemas"]["SendOtpRequest"]
    for body in INVALID_BODIES:
        if isinstance(body, dict):
            with pytest.raises(jsonschema.ValidationError):
                validate(body, request_schema)
        r = gateway.send_otp(body)
        assert r.status == 422, (body, r)
        check_answer(r, "/send-otp", "POST")
    r = send(gateway, "/send-otp", "x" * 5000)
    assert r.status == 413, r
    check_answer(r, "/send-otp", "POST")
    r = send(gateway, "/send-otp", '{"chat_id": "1", "otp": "1234"}', ctype="text/plain")
    assert r.status == 415, r
    check_answer(r, "/send-otp", "POST")
    for method, path, allow in [("GET", "/send-otp", "POST"), ("POST", "/", "GET"),
                                ("PUT", "/health", "GET")]:
        r = send(gateway, path, "{}", method=method)
        assert r.status == 405, r
        check_answer(r, path, allow)  # a 405 is documented under the path's one operation
        assert r.headers["Allow"] == allow
    check_not_found(gateway.get("/nope"))
    assert bot.requests() == []


@pytest.mark.sqlite_only
def test_telegram_failures_match_their_schemas(gateway, bot):
    bot.config(unknown_chats=["404404"])
    r = gateway.send_otp({"chat_id": "404404", "otp": "1234"})
    assert r.status == 502, r
    assert check_answer(r, "/send-otp", "POST")["telegram_error_code"] == 400

    import sqlite3  # as a full or broken database would: the message is sent, then withdrawn
    con = sqlite3.connect(gateway.db_path)
    con.execute("CREATE TRIGGER fail_insert BEFORE INSERT ON pending_deletions "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    con.commit()
    r = gateway.send_otp({"chat_id": "81", "otp": "1234"})
    con.execute("DROP TRIGGER fail_insert")
    con.commit()
    con.close()
    assert r.status == 500, r
    check_answer(r, "/send-otp", "POST")

    bot.config(down_s=30)
    r = gateway.send_otp({"chat_id": "79", "otp": "1234"})
    assert r.status == 504, r
    check_answer(r, "/send-otp", "POST")
    bot.config(down_s=0)

    bot.config(flood={"retry_after": 3, "count": 1})
    r = gateway.send_otp({"chat_id": "77", "otp": "1234"})
    assert r.status == 503, r
    assert check_answer(r, "/send-otp", "POST")["telegram_error_code"] == 429
    assert r.headers["Retry-After"] == "3"
    # every process now waits Telegram's 3 s out, longer than TELEGRAM_SEND_WAIT_MS (2 s)
    r = gateway.send_otp({"chat_id": "78", "otp": "1234"})
    assert r.status == 503, r
    assert "telegram_error_code" not in check_answer(r, "/send-otp", "POST")


def test_rate_limit_429_matches_its_schema(make_gateway):
    gw = make_gateway(env={"RATE_LIMIT_PER_USER": "1"})
    assert gw.send_otp({"chat_id": "55", "otp": "1234"}).status == 200
    r = gw.send_otp({"chat_id": "55", "otp": "1234"})
    assert r.status == 429, r
    check_answer(r, "/send-otp", "POST")
    assert int(r.headers["Retry-After"]) > 0


def test_api_key_401_matches_its_schema(make_gateway):
    gw = make_gateway(env={"API_KEY": "docs-key-0123456789"})
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = gw.request("POST", "/send-otp", body={"chat_id": "58", "otp": "1234"},
                       headers={"Content-Type": JSON, **headers})
        assert r.status == 401, r
        check_answer(r, "/send-otp", "POST")
    for headers in ({"X-API-Key": "docs-key-0123456789"},
                    {"Authorization": "Bearer docs-key-0123456789"}):
        r = gw.request("POST", "/send-otp", body={"chat_id": "58", "otp": "1234"},
                       headers={"Content-Type": JSON, **headers})
        assert r.status == 200, r
        check_answer(r, "/send-otp", "POST")


def test_no_deleter_503_and_degraded_health_match_their_schemas(make_gateway, bot):
    gw = make_gateway(deleter=False)
    r = gw.get("/health")
    assert r.status == 503, r
    health = check_answer(r, "/health", "GET")
    assert health["failed_check"] == "deleter" and health["checks"]["deleter"] == "never_started"
    r = gw.send_otp({"chat_id": "56", "otp": "1234"})
    assert r.status == 503, r
    check_answer(r, "/send-otp", "POST")
    assert bot.requests() == []


def test_root_and_health_match_their_schemas(gateway):
    r = gateway.get("/")
    assert r.status == 200, r
    check_answer(r, "/", "GET")
    r = gateway.get("/health")
    assert r.status == 200, r
    check_answer(r, "/health", "GET")


def test_metrics_matches_the_document(gateway):
    assert gateway.send_otp({"chat_id": "57", "otp": "1234"}).status == 200
    r = gateway.get("/metrics")
    assert r.status == 200, r
    check_answer(r, "/metrics", "GET")
    sample = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+')
    for line in r.text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or \
            sample.fullmatch(line), line
    for name in ("otp_sent_total", "otp_failed_total", "rate_limit_exceeded_total"):
        assert f"# TYPE {name} counter" in r.text, name
    r = send(gateway, "/metrics", "{}", method="POST")
    assert r.status == 405, r
    check_answer(r, "/metrics", "GET")


def test_revoke_otp_answers_match_their_schemas(make_gateway, bot):
    gw = make_gateway(env={"API_KEY": "docs-key-0123456789"})
    key = {"Content-Type": JSON, "X-API-Key": "docs-key-0123456789"}
    request_schema = SPEC["components"]["schemas"]["RevokeOtpRequest"]

    def revoke(body, headers=key, ctype=None):
        h = dict(headers, **({"Content-Type": ctype} if ctype else {}))
        return gw.request("POST", "/revoke-otp", body=body, headers=h)

    sent = []
    for chat_id in ("123456789", 123456789, "-1001234567890", "@my_channel", "2091"):
        r = gw.request("POST", "/send-otp", body={"chat_id": chat_id, "otp": "1234"}, headers=key)
        assert r.status == 200, r
        sent.append((chat_id, r.json["message_id"]))
    for chat_id, mid in sent[:4]:
        body = {"chat_id": chat_id, "message_id": mid}
        validate(body, request_schema)
        r = revoke(body)
        assert r.status == 200, r
        assert check_answer(r, "/revoke-otp", "POST")["chat_id"] == str(chat_id)
        r = revoke(body)
        assert r.status == 404, r
        check_answer(r, "/revoke-otp", "POST")

    for body in [{}, {"chat_id": "1"}, {"chat_id": "1", "message_id": "42"},
                 {"chat_id": "1", "message_id": 0}, {"chat_id": "abc", "message_id": 1},
                 {"chat_id": "1", "message_id": 1, "otp": "1234"}, '{"chat_id": ', "[1]"]:
        if isinstance(body, dict):
            with pytest.raises(jsonschema.ValidationError):
                validate(body, request_schema)
        r = revoke(body)
        assert r.status == 422, (body, r)
        check_answer(r, "/revoke-otp", "POST")
    for r, status in [(revoke({"chat_id": "1", "message_id": 1}, headers={"Content-Type": JSON}), 401),
                      (revoke("x" * 5000), 413),
                      (revoke("{}", ctype="text/plain"), 415),
                      (gw.get("/revoke-otp"), 405)]:
        assert r.status == status, r
        check_answer(r, "/revoke-otp", "POST")

    bot.config(flood={"retry_after": 3, "count": 1}, flood_methods=["deleteMessage"])
    r = revoke({"chat_id": "2091", "message_id": sent[4][1]})
    assert r.status == 202, r
    check_answer(r, "/revoke-otp", "POST")
