"""Faults (issue 16), each against a real retain-server on 127.0.0.1: a model step that fails
inside the engine (--test-fail-step; also inside a prompt, after its first chunk), the state pool exhausted by running requests, a flood past
--max-queue, malformed HTTP/2 from a raw socket, and a model directory missing or damaged at
start-up. Each must leave the other sessions exact and the server serving, with a clear status
for the caller involved.

Independent truth for "exact": a fresh session created with the same tokens as its prefix
(CreateSession.prefix_tokens), continued greedily, against the session that saw the fault.

Run by ctest (Faults) with /usr/bin/python3; PYTHONPATH = the generated stubs and this folder.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt

TIMEOUT = 120.0
KJV = os.path.join(rt.env_path("RETAIN_SOURCE_DIR"), "models", "rwkv7-kjv-byte")
STATE_BYTES = 104448  # the KJV model's session state (retain-server's start-up line says so)


greedy = rt.greedy


class Stream(threading.Thread):
    """One Generate stream read on its own thread: the ids received, then the final status."""

    def __init__(self, stub, req):
        super().__init__(daemon=True)
        self.stub, self.req = stub, req
        self.ids, self.code, self.details, self.finished, self.request_id = [], None, "", None, ""
        self.first = threading.Event()
        self.start()

    def run(self):
        try:
            for r in self.stub.Generate(self.req, timeout=TIMEOUT):
                kind = r.WhichOneof("event")
                if kind == "started":
                    self.request_id = r.started.request_id
                elif kind == "token":
                    self.ids.append(r.token.id)
                    self.first.set()
                elif kind == "finished":
                    self.finished = r.finished
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.code, self.details = e.code(), e.details()
        self.first.set()

    def result(self):
        self.join(TIMEOUT)
        return self


class FaultTest(unittest.TestCase):
    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.server = rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1", *cls.ARGS])
        cls.channel = grpc.insecure_channel(cls.server.address)
        cls.stub = pbg.RetainStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop_and_check()

    def run_to_end(self, req):
        s = Stream(self.stub, req).result()
        self.assertEqual(s.code, grpc.StatusCode.OK, f"{s.details}\n{self.server.log()}")
        return s.ids

    def assert_consistent(self, session_id, consumed):
        """The session holds exactly `consumed` and continues as a fresh session with those tokens."""
        info = self.stub.GetSession(pb.GetSessionRequest(session_id=session_id), timeout=TIMEOUT)
        self.assertEqual(info.position, len(consumed))
        fresh = self.stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=consumed), timeout=TIMEOUT)
        try:
            self.assertEqual(self.run_to_end(greedy((), 8, session_id)), self.run_to_end(greedy((), 8, fresh.id)))
        finally:
            self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=fresh.id), timeout=TIMEOUT)

    def serving(self):
        return self.run_to_end(greedy(b"And", 2))


class FailingStep(FaultTest):
    ARGS = ["--test-fail-step", "40"]

    def test_only_that_steps_requests_fail_and_their_sessions_stay_at_the_tokens_sent(self):
        idle = self.stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=list(b"Idle beside it")), timeout=TIMEOUT)
        before = self.stub.ExportSession(pb.ExportSessionRequest(session_id=idle.id), timeout=TIMEOUT)
        prompts = [list(b"In the beginning"), list(b"And God said"), list(b"Let there be")]
        sessions = [self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id for _ in prompts]
        streams = [Stream(self.stub, greedy(p, 200, s)) for p, s in zip(prompts, sessions)]
        for s in streams:
            s.result()
        failed = [s for s in streams if s.code != grpc.StatusCode.OK]
        self.assertTrue(failed, "the injected step failed no request")
        for s in failed:
            self.assertEqual(s.code, grpc.StatusCode.INTERNAL, s.details)
            self.assertIn("injected failure of step 40", s.details)
            self.assertLess(len(s.ids), 200)
        for p, sid, s in zip(prompts, sessions, streams):
            self.assert_consistent(sid, p + s.ids)
        after = self.stub.ExportSession(pb.ExportSessionRequest(session_id=idle.id), timeout=TIMEOUT)
        self.assertEqual([c.SerializeToString() for c in before], [c.SerializeToString() for c in after])
        self.assertEqual(len(self.serving()), 2)


class FailingStepInsideAPrompt(FaultTest):
    """Prompts fed 8 tokens a step (--max-step-tokens) and the second step failing: a request is
    cut inside its prompt, after its first chunk. A pool of two slots with a host tier below it,
    so the cut session is parked (export format) and restored before it continues."""
    ARGS = ["--test-fail-step", "2", "--max-batch", "2", "--max-step-tokens", "8",
            "--state-budget-bytes", str(2 * STATE_BYTES), "--host-state-budget-bytes", str(16 * STATE_BYTES)]

    def test_a_session_cut_inside_its_prompt_continues_from_an_empty_prompt_after_a_spill(self):
        sid = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        prompt = list(b"In the beginning God created the heaven")
        s = Stream(self.stub, greedy(prompt, 8, sid)).result()
        self.assertEqual(s.code, grpc.StatusCode.INTERNAL, s.details)
        self.assertIn("injected failure of step 2", s.details)
        self.assertEqual(s.ids, [])
        # Two sessions made after it take the pool: the cut one, least recently used, is parked.
        others = [self.stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=list(b"Other %d" % i)),
                                          timeout=TIMEOUT).id for i in range(2)]
        self.assertEqual(self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=TIMEOUT).tier, "host")
        # Position = the first chunk; the empty prompt restores it and continues as a fresh session
        # fed exactly those 8 tokens.
        self.assert_consistent(sid, prompt[:8])
        for o in others:
            self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=o), timeout=TIMEOUT)


class PoolExhausted(FaultTest):
    ARGS = ["--state-budget-bytes", str(2 * STATE_BYTES), "--max-tokens-limit", "100000"]

    def test_running_sessions_are_never_evicted_and_a_request_without_a_slot_is_refused(self):
        a = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        b = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        long_a = Stream(self.stub, greedy(list(b"In the beginning"), 100000, a))
        long_b = Stream(self.stub, greedy(list(b"And God said"), 100000, b))
        self.assertTrue(long_a.first.wait(TIMEOUT) and long_b.first.wait(TIMEOUT))
        for call in (lambda: self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT),
                     lambda: list(self.stub.Generate(greedy(b"x", 2), timeout=TIMEOUT))):
            with self.assertRaises(grpc.RpcError) as e:
                call()
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("state pool full", e.exception.details())
        # Stop A: now idle, it is the one evicted for a new session; B keeps running untouched.
        self.stub.StopGeneration(pb.StopGenerationRequest(request_id=long_a.request_id), timeout=TIMEOUT)
        long_a.result()
        self.assertEqual(long_a.code, grpc.StatusCode.OK)
        c = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.GetSession(pb.GetSessionRequest(session_id=a), timeout=TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertTrue(self.stub.GetSession(pb.GetSessionRequest(session_id=b), timeout=TIMEOUT).busy)
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=c), timeout=TIMEOUT)
        # B, stopped in turn, holds exactly what it was sent and continues as a fresh session would
        # (the fresh one takes the slot C left).
        self.stub.StopGeneration(pb.StopGenerationRequest(request_id=long_b.request_id), timeout=TIMEOUT)
        long_b.result()
        self.assertEqual(long_b.code, grpc.StatusCode.OK)
        self.assert_consistent(b, list(b"And God said") + long_b.ids)


class QueueFlood(FaultTest):
    ARGS = ["--max-batch", "1", "--max-queue", "2", "--max-tokens-limit", "100000"]

    def test_requests_past_max_queue_are_refused_and_the_running_one_is_untouched(self):
        sid = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        running = Stream(self.stub, greedy(list(b"In the beginning"), 300, sid))
        self.assertTrue(running.first.wait(TIMEOUT))
        flood = [Stream(self.stub, greedy(b"x", 1)) for _ in range(8)]
        for s in flood:
            s.result()
        refused = [s for s in flood if s.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        self.assertTrue(all(s.code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED) for s in flood),
                        [(s.code, s.details) for s in flood])
        self.assertGreaterEqual(len(refused), 8 - 2 - 1)  # at most 2 wait; one may find the batch free at the end
        for s in refused:
            self.assertIn("--max-queue", s.details)
        running.result()
        self.assertEqual(running.code, grpc.StatusCode.OK)
        self.assertEqual(len(running.ids), 300)
        self.assert_consistent(sid, list(b"In the beginning") + running.ids)


class MalformedHttp2(FaultTest):
    def test_garbage_on_the_grpc_port_leaves_a_stream_beside_it_and_the_server_serving(self):
        sid = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=TIMEOUT).id
        beside = Stream(self.stub, greedy(list(b"In the beginning"), 120, sid))
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        payloads = [
            b"\x00" * 64,                                          # not HTTP/2 at all
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                  # HTTP/1.1
            preface + b"\x00\x00\x04\x04\x00\x00\x00\x00\x00",     # SETTINGS whose length is not a multiple of 6
            preface + b"\xff\xff\xff\x01\x04\x00\x00\x00\x01",     # a HEADERS frame over any size limit
            preface + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x10\x01\x05\x00\x00\x00\x01" + os.urandom(16),
        ]
        for p in payloads:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                s.sendall(p)
                s.shutdown(socket.SHUT_WR)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass  # a reset is a fine answer to garbage
        beside.result()
        self.assertEqual(beside.code, grpc.StatusCode.OK, beside.details)
        self.assertEqual(len(beside.ids), 120)
        self.assert_consistent(sid, list(b"In the beginning") + beside.ids)
        self.assertEqual(len(self.serving()), 2)


class BadModelAtStartUp(unittest.TestCase):
    """A model that cannot load stops the server before it serves (exit 2), naming the file and,
    where one is at fault, the tensor, even when other --model flags are fine: a replica that came
    up without one of its configured models would answer NOT_FOUND for it while reporting healthy."""

    def start(self, *models):
        args = [rt.env_path("RETAIN_SERVER_BIN"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
        for m in models:
            args += ["--model", m]
        # A server that starts after all would serve until killed: 60 s is far past any load here.
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    def test_missing_truncated_and_garbled_models_refuse_to_start_naming_what(self):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "gone")
            r = self.start(f"good={KJV}", f"bad={missing}")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"{missing} does not exist", r.stderr)

            truncated = os.path.join(tmp, "truncated")
            shutil.copytree(KJV, truncated)
            weights = os.path.join(truncated, "model.safetensors")
            os.truncate(weights, os.path.getsize(weights) // 2)
            r = self.start(f"good={KJV}", f"bad={truncated}")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(weights, r.stderr)
            self.assertIn("tensor '", r.stderr)
            self.assertNotIn("listening on", r.stderr)

            garbled = os.path.join(tmp, "garbled")
            shutil.copytree(KJV, garbled)
            weights = os.path.join(garbled, "model.safetensors")
            with open(weights, "r+b") as f:
                f.seek(8)
                f.write(b"{not json at all")
            r = self.start(f"bad={garbled}", f"good={KJV}")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(weights, r.stderr)
            self.assertNotIn("listening on", r.stderr)

            bad_config = os.path.join(tmp, "bad-config")
            shutil.copytree(KJV, bad_config)
            with open(os.path.join(bad_config, "config.json"), "w") as f:
                f.write('{"architecture": ')
            r = self.start(f"good={KJV}", f"bad={bad_config}")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("config.json", r.stderr)
            self.assertNotIn("listening on", r.stderr)


if __name__ == "__main__":
    unittest.main()
