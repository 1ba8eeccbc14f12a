"""retain-server's OpenAI-compatible HTTP API (--http-listen) through real HTTP from Python's
urllib and raw sockets, held to what Generate over gRPC gives on the same server: the raw SSE
framing, non-streaming responses, every error shape, sessions over HTTP equal to sessions over
gRPC, the generation limit (429), a client that goes away (its request is cancelled), bearer
tokens, the protocol label of the metrics and the drain over HTTP.

Run by ctest (HttpApi) with /usr/bin/python3; PYTHONPATH = the generated stubs and this folder.
"""
import http.client
import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt

MODEL = "kjv"
TIMEOUT = 120.0


def grpc_generate(stub, prompt="", max_tokens=16, session="", stop=(), logprobs=0, metadata=None):
    """Text, token ids, logprobs and the finished event of a greedy Generate over gRPC."""
    req = pb.GenerateRequest(model="" if session else MODEL, session_id=session, prompt_text=prompt, logprobs=logprobs)
    req.sampling.temperature = 0.0
    req.stopping.max_tokens = max_tokens
    req.stopping.stop.extend(stop)
    text, ids, lps, finished = "", [], [], None
    for r in stub.Generate(req, timeout=TIMEOUT, metadata=metadata):
        kind = r.WhichOneof("event")
        if kind == "token":
            text += r.token.text
            ids.append(r.token.id)
            lps.append(r.token.logprob)
        elif kind == "finished":
            finished = r.finished
            text += r.finished.text_tail
    return text, ids, lps, finished


class Http:
    """Requests to one server's HTTP port."""

    def __init__(self, port, token=None):
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.token = token

    def request(self, method, path, body=None, raw=None, token=None):
        """(status, headers, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
                status, headers, payload = res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            status, headers, payload = e.code, e.headers, e.read()
        text = payload.decode("utf-8")
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, headers, json.loads(text)
        return status, headers, text

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def stream(self, path, body):
        """(status, content type, the raw bytes of the whole SSE response)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn.request("POST", path, json.dumps(body), headers)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, res.getheader("Content-Type"), data

    def open_stream(self, path, body):
        """A raw socket that has sent a streaming request; the caller reads and closes it."""
        payload = json.dumps(body).encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
        return s


def sse_events(raw):
    """The `data:` payloads of a text/event-stream body (chunked framing already removed),
    checking that every event is exactly `data: ...` lines ended by a blank line."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), repr(text[-40:])
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            continue  # keep-alive comments
        assert len(lines) == 1 and lines[0].startswith("data: "), repr(block)
        events.append(lines[0][len("data: "):])
    return events


def dechunk(raw):
    """The body of a raw HTTP/1.1 response sent with chunked transfer encoding."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, rest = body + rest[:size], rest[size + 2:]


def read_events(sock, count):
    """Reads from a raw SSE response until `count` data events came; returns them."""
    buf = b""
    while buf.count(b"data: ") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def metric(port, series):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as res:
        text = res.read().decode()
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


class HttpApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        kjv = os.path.join(source, "models", "rwkv7-kjv-byte")
        cls.server = rt.ServerProcess(["--model", f"{MODEL}={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0",
                                       "--http-threads", "6", "--http-max-generations", "2"])
        if cls.server.http_port is None:
            cls.server.stop()
            raise AssertionError("no `http on` in the start-up line:\n" + cls.server.log())
        cls.http = Http(cls.server.http_port)
        cls.channel = grpc.insecure_channel(cls.server.address)
        cls.stub = pbg.RetainStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop_and_check()

    def test_completion_equals_grpc_generate(self):
        prompt = "In the beginning God"
        want, ids, _, fin = grpc_generate(self.stub, prompt, max_tokens=24)
        status, headers, body = self.http.post("/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 24,
                                                                    "temperature": 0})
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual(body["model"], MODEL)
        self.assertTrue(body["id"].startswith("cmpl-"))
        self.assertIsNone(body["session_id"])
        self.assertEqual(len(body["choices"]), 1)
        self.assertEqual(body["choices"][0]["text"], want)
        self.assertEqual(body["choices"][0]["finish_reason"], "length")
        # The byte tokenizer: one prompt token per byte.
        self.assertEqual(body["usage"], {"prompt_tokens": len(prompt.encode()), "completion_tokens": len(ids),
                                         "total_tokens": len(prompt.encode()) + len(ids),
                                         "prompt_tokens_details": {"cached_tokens": 0}})
        self.assertEqual(len(ids), 24)
        self.assertEqual(fin.reason, pb.Finished.LENGTH)

    def test_usage_counts_prompt_tokens_served_from_the_prefix_cache(self):
        # The default --prefix-block 256: a 600-byte shared start leaves cached states at 256 and
        # 512 tokens; the second prompt is served those 512 and prefills only the rest.
        shared = ("~prefix-cache test~ And God said, Let there be light: and there was light. " * 9)[:600]
        s, _, first = self.http.post("/v1/completions", {"prompt": shared + " And the evening", "max_tokens": 4,
                                                          "temperature": 0})
        self.assertEqual(s, 200, first)
        self.assertEqual(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0)
        s, ctype, raw = self.http.stream("/v1/completions", {"prompt": shared + " And the morning", "max_tokens": 4,
                                                             "temperature": 0, "stream": True,
                                                             "stream_options": {"include_usage": True}})
        self.assertEqual(s, 200, raw)
        usage = json.loads(sse_events(raw)[-2])["usage"]
        self.assertEqual(usage["prompt_tokens"], len(shared) + len(" And the morning"))
        self.assertEqual(usage["prompt_tokens_details"]["cached_tokens"], 512)
        # And the same over gRPC: Finished.usage.cached_tokens.
        _, _, _, fin = grpc_generate(self.stub, shared + " And the night", max_tokens=2)
        self.assertEqual(fin.usage.cached_tokens, 512)

    def test_completion_sse_framing(self):
        prompt = "And the earth was"
        want, ids, _, _ = grpc_generate(self.stub, prompt, max_tokens=12)
        status, ctype, raw = self.http.stream("/v1/completions", {"prompt": prompt, "max_tokens": 12, "temperature": 0,
                                                                  "stream": True, "stream_options": {"include_usage": True}})
        self.assertEqual(status, 200, raw)
        self.assertTrue(ctype.startswith("text/event-stream"), ctype)
        events = sse_events(raw)
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        usage = chunks[-1]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["completion_tokens"], len(ids))
        self.assertEqual(usage["usage"]["prompt_tokens"], len(prompt.encode()))
        final = chunks[-2]
        self.assertEqual(final["choices"][0]["finish_reason"], "length")
        for c in chunks[:-2]:
            self.assertEqual(c["object"], "text_completion")
            self.assertIsNone(c["choices"][0]["finish_reason"])
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks[:-1]), want)
        self.assertEqual(len({c["id"] for c in chunks}), 1)

    def test_chat_equals_grpc_on_the_rendered_prompt(self):
        question = "Who was the son of Seth?"
        want, ids, _, _ = grpc_generate(self.stub, f"User: {question}\n\nAssistant:", max_tokens=20)
        status, _, raw = self.http.stream("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 20, "temperature": 0,
            "stream": True})
        self.assertEqual(status, 200)
        events = sse_events(raw)
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        self.assertEqual(chunks[0]["object"], "chat.completion.chunk")
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual("".join(c["choices"][0]["delta"].get("content", "") for c in chunks), want)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(chunks[-1]["choices"][0]["delta"], {})
        status, _, body = self.http.post("/v1/chat/completions", {
            "messages": [{"role": "user", "content": question}], "max_tokens": 20, "temperature": 0})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["choices"][0]["message"], {"role": "assistant", "content": want})
        self.assertEqual(body["usage"]["completion_tokens"], len(ids))

    def test_stop_string_and_logprobs(self):
        prompt = "Thou shalt"
        full, _, _, _ = grpc_generate(self.stub, prompt, max_tokens=40)
        stop = full[12:15]
        self.assertEqual(len(stop), 3, full)
        want, _, _, fin = grpc_generate(self.stub, prompt, max_tokens=40, stop=[stop])
        self.assertEqual(fin.reason, pb.Finished.STOP)
        status, _, body = self.http.post("/v1/completions", {"prompt": prompt, "max_tokens": 40, "temperature": 0,
                                                             "stop": [stop]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        self.assertEqual(body["choices"][0]["text"], want)
        self.assertEqual(body["choices"][0]["text"], full[:full.index(stop)])

        _, ids, lps, _ = grpc_generate(self.stub, prompt, max_tokens=6, logprobs=2)
        status, _, body = self.http.post("/v1/completions", {"prompt": prompt, "max_tokens": 6, "temperature": 0,
                                                             "logprobs": 2})
        self.assertEqual(status, 200, body)
        lp = body["choices"][0]["logprobs"]
        self.assertEqual(len(lp["tokens"]), len(ids))
        for got, exp in zip(lp["token_logprobs"], lps):
            self.assertAlmostEqual(got, exp, places=5)
        for top in lp["top_logprobs"]:
            self.assertEqual(len(top), 2)

    def assertError(self, status, body, http_status, err_type, param, code):
        self.assertEqual(status, http_status, body)
        self.assertEqual(set(body), {"error"})
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        self.assertEqual(body["error"]["type"], err_type, body)
        self.assertEqual(body["error"]["param"], param, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertTrue(body["error"]["message"])

    def test_every_error_shape(self):
        s, _, b = self.http.post("/v1/completions", None, raw=b"{not json")
        self.assertError(s, b, 400, "invalid_request_error", None, "invalid_argument")
        s, _, b = self.http.post("/v1/completions", {"model": "nope", "prompt": "x"})
        self.assertError(s, b, 404, "not_found_error", "model", "not_found")
        s, _, b = self.http.post("/v1/completions", {"prompt": "x", "top_p": 2})
        self.assertError(s, b, 400, "invalid_request_error", "top_p", "invalid_argument")
        self.assertNotIn("sampling.", b["error"]["message"])
        s, _, b = self.http.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2})
        self.assertError(s, b, 400, "invalid_request_error", "n", "invalid_argument")
        s, _, b = self.http.post("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
        self.assertError(s, b, 400, "invalid_request_error", "messages[0].role", "invalid_argument")
        s, _, b = self.http.post("/v1/completions", {"prompt": "x", "max_tokens": 10 ** 6})
        self.assertError(s, b, 400, "invalid_request_error", "max_tokens", "invalid_argument")
        s, _, b = self.http.post("/v1/completions", {"prompt": "x", "session_id": "never-made"})
        self.assertError(s, b, 404, "not_found_error", "session_id", "not_found")
        s, _, b = self.http.request("GET", "/v1/nothing")
        self.assertError(s, b, 404, "not_found_error", None, "not_found")

    def test_models_and_health(self):
        s, _, b = self.http.request("GET", "/v1/models")
        self.assertEqual(s, 200)
        self.assertEqual(b["object"], "list")
        self.assertEqual([m["id"] for m in b["data"]], [MODEL])
        self.assertEqual(b["data"][0]["object"], "model")
        self.assertEqual(b["data"][0]["retain"]["architecture"], "rwkv7")
        models = self.stub.ListModels(pb.ListModelsRequest(), timeout=30)
        self.assertEqual(b["data"][0]["retain"]["fingerprint"], models.models[0].fingerprint)
        s, _, b = self.http.request("GET", "/health")
        self.assertEqual((s, b), (200, {"status": "ok"}))

    def test_session_over_http_equals_session_over_grpc(self):
        turns = [("And God said", 10), (" Let there", 8), ("", 6)]  # the last continues from the pending token
        s, _, made = self.http.post("/v1/sessions", {"model": MODEL})
        self.assertEqual(s, 200, made)
        self.assertEqual((made["object"], made["model"], made["position"]), ("session", MODEL, 0))
        g = self.stub.CreateSession(pb.CreateSessionRequest(model=MODEL), timeout=30)
        for prompt, n in turns:
            want, _, _, fin = grpc_generate(self.stub, prompt, max_tokens=n, session=g.id)
            body = {"session_id": made["id"], "max_tokens": n, "temperature": 0}
            if prompt:
                body["prompt"] = prompt
            s, _, b = self.http.post("/v1/completions", body)
            self.assertEqual(s, 200, b)
            self.assertEqual(b["session_id"], made["id"])
            self.assertEqual(b["choices"][0]["text"], want)
            s, _, info = self.http.request("GET", f"/v1/sessions/{made['id']}")
            self.assertEqual(info["position"], fin.position)
            self.assertEqual(self.stub.GetSession(pb.GetSessionRequest(session_id=made["id"]), timeout=30).position,
                             fin.position)
        # Forked over HTTP, continued over HTTP == forked and continued over gRPC.
        s, _, fork = self.http.post(f"/v1/sessions/{made['id']}/fork", {})
        self.assertEqual(s, 200, fork)
        gfork = self.stub.ForkSession(pb.ForkSessionRequest(session_id=g.id), timeout=30)
        want, _, _, _ = grpc_generate(self.stub, " the light", max_tokens=8, session=gfork.id)
        s, _, b = self.http.post("/v1/completions", {"session_id": fork["id"], "prompt": " the light", "max_tokens": 8,
                                                     "temperature": 0})
        self.assertEqual(b["choices"][0]["text"], want)
        # A chat continued in a session sends only the new turn; the template's continuation joins them.
        s, _, chat = self.http.post("/v1/sessions", {})
        gchat = self.stub.CreateSession(pb.CreateSessionRequest(model=MODEL), timeout=30)
        for i, (question, prefix) in enumerate([("Who made the heaven?", ""), ("And the earth?", "\n\n")]):
            want, _, _, _ = grpc_generate(self.stub, f"{prefix}User: {question}\n\nAssistant:", max_tokens=12,
                                          session=gchat.id)
            s, _, b = self.http.post("/v1/chat/completions", {
                "session_id": chat["id"], "messages": [{"role": "user", "content": question}], "max_tokens": 12,
                "temperature": 0})
            self.assertEqual(s, 200, b)
            self.assertEqual(b["choices"][0]["message"]["content"], want, f"turn {i}")
            # The same tokens went in: the first turn has no continuation before it.
            self.assertEqual(self.http.request("GET", f"/v1/sessions/{chat['id']}")[2]["position"],
                             self.stub.GetSession(pb.GetSessionRequest(session_id=gchat.id), timeout=30).position)
        for sid in (made["id"], fork["id"], chat["id"]):
            s, _, b = self.http.request("DELETE", f"/v1/sessions/{sid}")
            self.assertEqual((s, b["deleted"]), (200, True))
        s, _, b = self.http.request("GET", f"/v1/sessions/{made['id']}")
        self.assertEqual(s, 404)

    def test_stop_generation_ends_an_http_stream_gracefully(self):
        # StopGeneration (gRPC) with the HTTP completion's id: the stream still delivers every
        # token the session consumed, then finish_reason "cancelled" and [DONE].
        s, _, sess = self.http.post("/v1/sessions", {})
        prompt = "In the beginning"
        sock = self.http.open_stream("/v1/completions", {"prompt": prompt, "max_tokens": 8000, "temperature": 0,
                                                         "stream": True, "session_id": sess["id"]})
        try:
            head = read_events(sock, 3)
            rid = re.search(rb'"id":"(cmpl-req-\d+)"', head).group(1).decode()
            self.stub.StopGeneration(pb.StopGenerationRequest(request_id=rid), timeout=TIMEOUT)
            raw = head
            while not raw.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "the stream was cut instead of ended")
                raw += chunk
        finally:
            sock.close()
        events = sse_events(dechunk(raw))
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "cancelled")
        generated = len(chunks) - 1  # one chunk per token, then the one with finish_reason
        self.assertLess(generated, 8000)
        _, _, info = self.http.request("GET", f"/v1/sessions/{sess['id']}")
        self.assertFalse(info["busy"])
        self.assertEqual(info["position"], len(prompt.encode()) + generated)
        # It has ended: a second stop finds nothing running, by either form of the id.
        for again in (rid, rid[len("cmpl-"):]):
            with self.assertRaises(grpc.RpcError) as e:
                self.stub.StopGeneration(pb.StopGenerationRequest(request_id=again), timeout=TIMEOUT)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_generation_limit_and_a_client_that_goes_away(self):
        s, _, sess = self.http.post("/v1/sessions", {})
        body = {"prompt": "In the beginning", "max_tokens": 8000, "temperature": 0, "stream": True}
        first = self.http.open_stream("/v1/completions", {**body, "session_id": sess["id"]})
        second = self.http.open_stream("/v1/completions", body)
        try:
            self.assertIn(b"data: ", read_events(first, 3))
            self.assertIn(b"data: ", read_events(second, 3))
            # Both generation places (--http-max-generations 2) are held: the third is refused.
            s, _, b = self.http.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
            self.assertError(s, b, 429, "rate_limit_error", None, "resource_exhausted")
            self.assertIn("--http-max-generations", b["error"]["message"])
        finally:
            first.close()
            second.close()
        # Gone clients' requests are cancelled: the session stops well short of max_tokens and
        # holds the tokens its request reports generated.
        self.assertTrue(rt.wait_until(lambda: not self.http.request("GET", f"/v1/sessions/{sess['id']}")[2]["busy"],
                                      timeout=60), self.server.log())
        position = self.http.request("GET", f"/v1/sessions/{sess['id']}")[2]["position"]
        self.assertLess(position, len("In the beginning") + 8000)
        self.assertGreaterEqual(position, len("In the beginning") + 3)  # at least the tokens the client read
        self.assertTrue(rt.wait_until(lambda: metric(self.server.metrics_port,
                                                     f'retain_requests_finished_total{{model="{MODEL}",protocol="http",reason="cancelled"}}') == 2,
                                      timeout=30), self.server.log())
        # The places are free again.
        s, _, b = self.http.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "temperature": 0})
        self.assertEqual(s, 200, b)

    def test_metrics_carry_the_protocol(self):
        port = self.server.metrics_port
        series = f'retain_requests_finished_total{{model="{MODEL}",protocol="http",reason="length"}}'
        before = metric(port, series)
        errors = f'retain_request_errors_total{{code="INVALID_ARGUMENT",model="{MODEL}",protocol="http"}}'
        errors_before = metric(port, errors)
        self.assertIsNotNone(before)
        self.assertIsNotNone(errors_before)  # exists at 0 before the first error, as gRPC's
        self.http.post("/v1/completions", {"prompt": "x", "max_tokens": 3, "temperature": 0})
        self.http.post("/v1/completions", {"prompt": "x", "max_tokens": 3, "temperature": -1})
        self.assertEqual(metric(port, series), before + 1)
        self.assertEqual(metric(port, errors), errors_before + 1)
        self.assertIsNotNone(metric(port, f'retain_requests_finished_total{{model="{MODEL}",protocol="grpc",reason="length"}}'))


class HttpTenants(unittest.TestCase):
    """Bearer tokens over HTTP, exactly as over gRPC (--auth-tokens)."""

    @classmethod
    def setUpClass(cls):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        kjv = os.path.join(source, "models", "rwkv7-kjv-byte")
        cls.tmp = tempfile.TemporaryDirectory()
        tokens = os.path.join(cls.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write("alice alice-secret-token-1\nbob bob-secret-token-22\n")
        cls.server = rt.ServerProcess(["--model", f"{MODEL}={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0",
                                       "--auth-tokens", tokens])
        cls.alice = Http(cls.server.http_port, "alice-secret-token-1")
        cls.bob = Http(cls.server.http_port, "bob-secret-token-22")
        cls.nobody = Http(cls.server.http_port)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_and_check()
        cls.tmp.cleanup()

    def test_tokens_and_tenant_sessions(self):
        for who, token in ((self.nobody, None), (self.nobody, "wrong-token")):
            s, h, b = who.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, token=token)
            self.assertEqual(s, 401, b)
            self.assertEqual(b["error"]["type"], "authentication_error")
            self.assertEqual(h["WWW-Authenticate"], "Bearer")
            s, _, b = who.request("GET", "/v1/models", token=token)
            self.assertEqual(s, 401)
        s, _, b = self.alice.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "temperature": 0})
        self.assertEqual(s, 200, b)
        s, _, sess = self.alice.post("/v1/sessions", {})
        self.assertEqual(s, 200)
        # Bob cannot see, continue, fork or delete Alice's session: the never-existed NOT_FOUND.
        for method, path, body in (("GET", f"/v1/sessions/{sess['id']}", None),
                                   ("POST", "/v1/completions", {"session_id": sess["id"], "prompt": "x"}),
                                   ("POST", f"/v1/sessions/{sess['id']}/fork", {}),
                                   ("DELETE", f"/v1/sessions/{sess['id']}", None)):
            s, _, b = self.bob.request(method, path, body)
            self.assertEqual(s, 404, (method, path, b))
            s2, _, b2 = self.bob.request("GET", "/v1/sessions/never-existed-1")
            self.assertEqual(b["error"]["message"].replace(sess["id"], "ID"),
                             b2["error"]["message"].replace("never-existed-1", "ID"))
        s, _, b = self.alice.request("GET", f"/v1/sessions/{sess['id']}")
        self.assertEqual(s, 200)
        self.assertEqual(self.alice.request("GET", "/health")[0], 200)  # health needs no token


class HttpPendingBound(unittest.TestCase):
    """--http-max-pending: with every HTTP thread busy, at most that many accepted connections wait
    in the server (plus the one the accepting thread holds); the rest wait in the kernel's
    backlog, and all are served once threads are free."""

    def test_connections_past_the_pending_bound_wait_outside_the_process(self):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        kjv = os.path.join(source, "models", "rwkv7-kjv-byte")
        server = rt.ServerProcess(["--model", f"{MODEL}={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0",
                                   "--http-threads", "3", "--http-max-generations", "2", "--http-max-pending", "2"])
        self.addCleanup(server.stop)  # also when an assertion fails (stop_and_check below is the check)
        h = Http(server.http_port)
        held, waiting = [], []

        def sockets():
            fds = os.listdir(f"/proc/{server.proc.pid}/fd")
            return sum(os.readlink(f"/proc/{server.proc.pid}/fd/{fd}").startswith("socket:") for fd in fds)

        try:
            # All three threads busy: two streams (the generation limit) and an idle connection.
            body = {"prompt": "In the beginning", "max_tokens": 8000, "temperature": 0, "stream": True}
            for _ in range(2):
                held.append(h.open_stream("/v1/completions", body))
                self.assertIn(b"data: ", read_events(held[-1], 1))
            held.append(socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT))
            time.sleep(0.3)
            before = sockets()
            for _ in range(20):
                c = socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT)
                c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                waiting.append(c)
            time.sleep(0.5)
            self.assertLessEqual(sockets() - before, 2 + 1, "accepted connections beyond --http-max-pending")
        finally:
            for c in held:
                c.close()
        for c in waiting:
            reply = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                reply += chunk
            c.close()
            self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply[:80])
        server.stop_and_check()


class HttpDeadline(unittest.TestCase):
    """--http-timeout is every completion's deadline: 504 as JSON, an error event in a stream; the
    session keeps the tokens generated before it (as a gRPC deadline does)."""

    def test_timeout_ends_completions(self):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        kjv = os.path.join(source, "models", "rwkv7-kjv-byte")
        server = rt.ServerProcess(["--model", f"{MODEL}={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0",
                                   "--http-timeout", "0.2", "--max-tokens-limit", "100000"])
        try:
            h = Http(server.http_port)
            s, _, sess = h.post("/v1/sessions", {})
            s, _, b = h.post("/v1/completions", {"prompt": "In the beginning", "max_tokens": 100000, "temperature": 0,
                                                 "session_id": sess["id"]})
            self.assertEqual(s, 504, b)
            self.assertEqual(b["error"]["type"], "server_error")
            self.assertEqual(b["error"]["code"], "deadline_exceeded")
            m = re.search(r"the session is at (\d+)", b["error"]["message"])
            self.assertIsNotNone(m, b)
            self.assertEqual(h.request("GET", f"/v1/sessions/{sess['id']}")[2]["position"], int(m.group(1)))
            status, _, raw = h.stream("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                               "max_tokens": 100000, "stream": True})
            self.assertEqual(status, 200)
            events = sse_events(raw)
            self.assertNotIn("[DONE]", events)
            self.assertEqual(json.loads(events[-1])["error"]["code"], "deadline_exceeded")
            self.assertGreater(len(events), 2)  # tokens came before the deadline
        finally:
            server.stop_and_check()


class HttpDrain(unittest.TestCase):
    """SIGTERM while an SSE stream runs: it is written to its end, /health says draining, new
    completions are refused with 503, and the server exits 0."""

    def test_drain_finishes_streams(self):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        kjv = os.path.join(source, "models", "rwkv7-kjv-byte")
        server = rt.ServerProcess(["--model", f"{MODEL}={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0",
                                   "--drain-timeout", "60"])
        try:
            h = Http(server.http_port)
            n = 3000
            sock = h.open_stream("/v1/completions", {"prompt": "In the beginning", "max_tokens": n, "temperature": 0,
                                                     "stream": True, "stream_options": {"include_usage": True}})
            buf = b""
            while buf.count(b"data: ") < 2:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, f"the stream closed early: {buf!r}")
                buf += chunk
            server.proc.send_signal(signal.SIGTERM)
            self.assertTrue(rt.wait_until(lambda: "draining" in server.log(), timeout=30))
            s, _, b = h.request("GET", "/health")
            self.assertEqual((s, b), (503, {"status": "draining"}))
            s, _, b = h.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
            self.assertEqual(s, 503, b)
            self.assertEqual(b["error"]["type"], "server_error")
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if b"data: [DONE]" in buf and buf.endswith(b"0\r\n\r\n"):
                    break
            sock.close()
            events = sse_events(dechunk(buf))
            self.assertEqual(events[-1], "[DONE]")
            chunks = [json.loads(e) for e in events[:-1]]
            self.assertEqual(chunks[-1]["usage"]["completion_tokens"], n)
            self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "length")
            server.proc.wait(60)
            self.assertEqual(server.proc.returncode, 0, server.log())
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()
