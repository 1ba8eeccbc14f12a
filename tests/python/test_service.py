"""retain-server through its real RPCs from Python (Debian's python3-grpcio, stubs generated
from proto/ at build time). Run by ctest: /usr/bin/python3 -m unittest test_service, with
PYTHONPATH = the generated stubs and this folder, $RETAIN_SERVER_BIN, $RETAIN_SOURCE_DIR,
$RETAIN_TEST_DATA_DIR.

One server serves the shipped default model (as "kjv", the default) and the conformance kit
rwkv7-tiny (as "tiny", token ids only: it has no tokenizer).
"""
import json
import os
import threading
import time
import unittest

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt

RPC_TIMEOUT = 120.0


def greedy(prompt=None, tokens=None, max_tokens=16, session="", model=""):
    req = pb.GenerateRequest(model=model, session_id=session)
    if prompt:
        req.prompt_text = prompt
    if tokens:
        req.prompt_tokens.extend(tokens)
    req.sampling.temperature = 0.0
    req.stopping.max_tokens = max_tokens
    req.stopping.ignore_eos = True
    return req


class Stream:
    """A whole Generate stream: started, the token ids and text, finished, the final code."""

    def __init__(self, stub, req, cancel_after=0):
        self.started = None
        self.finished = None
        self.ids = []
        self.text = ""
        self.code = grpc.StatusCode.OK
        self.details = ""
        call = stub.Generate(req, timeout=RPC_TIMEOUT)
        try:
            for r in call:
                kind = r.WhichOneof("event")
                if kind == "started":
                    self.started = r.started
                elif kind == "token":
                    self.ids.append(r.token.id)
                    self.text += r.token.text
                    if cancel_after and len(self.ids) == cancel_after:
                        call.cancel()
                elif kind == "finished":
                    self.finished = r.finished
                    self.text += r.finished.text_tail
        except grpc.RpcError as e:
            self.code = e.code()
            self.details = e.details()


class ServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        source = rt.env_path("RETAIN_SOURCE_DIR")
        cls.kjv_dir = os.path.join(source, "models", "rwkv7-kjv-byte")
        cls.tiny_dir = rt.conformance_kit("rwkv7-tiny")
        if cls.tiny_dir is None:
            raise unittest.SkipTest("conformance kit rwkv7-tiny not found")
        cls.server = rt.ServerProcess(["--model", f"kjv={cls.kjv_dir}", "--model", f"tiny={cls.tiny_dir}",
                                       "--threads", "1"])
        cls.channel = grpc.insecure_channel(cls.server.address)
        grpc.channel_ready_future(cls.channel).result(timeout=30)
        cls.stub = pbg.RetainStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop_and_check()

    def session(self, model="", prefix_tokens=None):
        req = pb.CreateSessionRequest(model=model)
        if prefix_tokens:
            req.prefix_tokens.extend(prefix_tokens)
        return self.stub.CreateSession(req, timeout=RPC_TIMEOUT)

    def generate(self, req, cancel_after=0):
        s = Stream(self.stub, req, cancel_after)
        if not cancel_after:
            self.assertEqual(s.code, grpc.StatusCode.OK, f"{s.details}\nserver:\n{self.server.log()}")
        return s

    def test_health_is_serving_overall_and_for_the_service(self):
        # grpc_health is not in Debian's python3-grpcio: the call is made with hand-encoded bytes.
        # HealthCheckRequest{service = 1: string}; HealthCheckResponse{status = 1: enum}, SERVING = 1.
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        for service in (b"", b"retain.v1.Retain"):
            request = b"" if not service else b"\x0a" + bytes([len(service)]) + service
            self.assertEqual(check(request, timeout=RPC_TIMEOUT), b"\x08\x01", service)

    def test_models_list_both_and_name_the_default(self):
        models = {m.name: m for m in self.stub.ListModels(pb.ListModelsRequest(), timeout=RPC_TIMEOUT).models}
        self.assertEqual(set(models), {"kjv", "tiny"})
        self.assertTrue(models["kjv"].is_default)
        self.assertFalse(models["tiny"].is_default)
        self.assertEqual(models["tiny"].vocab_size, 256)
        self.assertEqual(models["tiny"].architecture, "rwkv7")
        self.assertEqual(models["tiny"].n_layer, 2)
        self.assertEqual(models["tiny"].n_embd, 64)
        self.assertGreater(models["tiny"].state_bytes, 0)

    def test_prompt_tokens_reproduce_the_conformance_reference_argmax(self):
        with open(os.path.join(self.tiny_dir, "case.json")) as f:
            case = json.load(f)
        tol = case["tolerance"]["max_abs"]
        expected = rt.read_safetensors(os.path.join(self.tiny_dir, "expected.safetensors"))
        checked = 0
        for p, prompt in enumerate(case["prompts"]):
            # Row k of the logits follows ids[:k+1]: the prompt's rows, then one per decode token fed.
            ids = list(prompt) + list(case["decode"][p])
            shape, logits = expected[f"prompt{p}.logits"]
            rows = [logits[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
            shape, decode = expected[f"prompt{p}.decode_logits"]
            rows += [decode[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
            self.assertEqual(len(rows), len(ids))
            for k in range(1, len(ids) + 1):
                row = rows[k - 1]
                s = self.generate(greedy(tokens=ids[:k], max_tokens=1, model="tiny"))
                self.assertEqual(len(s.ids), 1)
                self.assertEqual(s.finished.reason, pb.Finished.LENGTH)
                self.assertEqual(s.finished.usage.prompt_tokens, k)
                best = rt.argmax(row)
                if s.ids[0] != best:
                    # Only a near-tie within the kit's tolerance may go either way.
                    self.assertLessEqual(row[best] - row[s.ids[0]], 2 * tol,
                                         f"prompt {p} prefix {k}: got {s.ids[0]}, reference argmax {best}")
                checked += 1
        self.assertEqual(checked, sum(len(a) + len(b) for a, b in zip(case["prompts"], case["decode"])))

    def test_a_session_continued_over_three_requests_equals_one_request(self):
        prompt = "And the LORD spake unto Moses, saying,"
        whole = self.generate(greedy(prompt, max_tokens=30)).ids
        self.assertEqual(len(whole), 30)
        sid = self.session().id
        parts = [self.generate(greedy(prompt, max_tokens=10, session=sid))]
        parts.append(self.generate(greedy(max_tokens=10, session=sid)))  # empty prompt: the pending token
        parts.append(self.generate(greedy(max_tokens=10, session=sid)))
        self.assertEqual(sum((s.ids for s in parts), []), whole)
        n_prompt = len(self.stub.Tokenize(pb.TokenizeRequest(text=prompt), timeout=RPC_TIMEOUT).ids)
        self.assertEqual([s.started.position_before for s in parts], [0, n_prompt + 10, n_prompt + 20])
        self.assertEqual(parts[-1].finished.position, n_prompt + 30)
        got = self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        self.assertEqual(got.position, n_prompt + 30)
        self.assertFalse(got.busy)

        # New text in the middle: the same as one request that sends everything at once.
        sid2 = self.session(model="tiny").id
        a, b = [5, 6, 7, 8], [200, 201]
        first = self.generate(greedy(tokens=a, max_tokens=6, session=sid2))
        second = self.generate(greedy(tokens=b, max_tokens=6, session=sid2))
        once = self.generate(greedy(tokens=a + first.ids + b, max_tokens=6, model="tiny"))
        self.assertEqual(second.ids, once.ids)
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid2), timeout=RPC_TIMEOUT)

    def test_four_concurrent_streams_each_equal_their_solo_runs(self):
        reqs = [greedy(p, max_tokens=60) for p in ("In the beginning", "And it came to pass", "Blessed is the man")]
        sampled = pb.GenerateRequest(prompt_text="The LORD is my shepherd")
        sampled.sampling.temperature = 1.0
        sampled.sampling.top_p = 0.9
        sampled.sampling.seed = 1234
        sampled.stopping.max_tokens = 60
        sampled.stopping.ignore_eos = True
        reqs.append(sampled)
        solo = [self.generate(r).ids for r in reqs]
        together = [None] * len(reqs)
        barrier = threading.Barrier(len(reqs))

        def run(i):
            barrier.wait()
            together[i] = Stream(self.stub, reqs[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, s in enumerate(together):
            self.assertEqual(s.code, grpc.StatusCode.OK, s.details)
            self.assertEqual(s.ids, solo[i], f"stream {i} differs from its solo run")
            self.assertEqual(len(s.ids), 60)

    def test_cancel_mid_stream_leaves_the_session_at_the_tokens_sent(self):
        prompt = "And Moses said unto the people,"
        whole = self.generate(greedy(prompt, max_tokens=1500)).ids
        sid = self.session().id
        cut = self.generate(greedy(prompt, max_tokens=1500, session=sid), cancel_after=5)
        self.assertEqual(cut.code, grpc.StatusCode.CANCELLED)
        self.assertEqual(cut.ids, whole[:len(cut.ids)])

        def idle():
            return not self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT).busy

        self.assertTrue(rt.wait_until(idle, 10), "the cancelled request never left the batch")
        n_prompt = len(self.stub.Tokenize(pb.TokenizeRequest(text=prompt), timeout=RPC_TIMEOUT).ids)
        generated = self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT).position - n_prompt
        # The position counts the tokens the server wrote to the stream: the ones received here, plus
        # any that were on the wire when the client cancelled (a server cannot know what the network
        # dropped). Never fewer than received, never half a step.
        self.assertGreaterEqual(generated, len(cut.ids))
        self.assertLess(generated, len(whole))
        print(f"\ncancel: {len(cut.ids)} tokens received, session at {generated} generated tokens")
        rest = self.generate(greedy(max_tokens=len(whole) - generated, session=sid))
        self.assertEqual(rest.ids, whole[generated:], "continuing differs from never having stopped")
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)

    def test_export_import_round_trip_and_a_damaged_import_is_refused(self):
        sid = self.session(model="tiny", prefix_tokens=[1, 2, 3, 4, 5]).id
        self.generate(greedy(tokens=[9, 9], max_tokens=4, session=sid))
        blob = b"".join(c.data for c in self.stub.ExportSession(pb.ExportSessionRequest(session_id=sid),
                                                                timeout=RPC_TIMEOUT))
        self.assertGreater(len(blob), 0)
        fork = self.stub.ForkSession(pb.ForkSessionRequest(session_id=sid), timeout=RPC_TIMEOUT).id
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        before = len(self.stub.ListSessions(pb.ListSessionsRequest(), timeout=RPC_TIMEOUT).sessions)
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0x40
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ImportSession(iter([pb.SessionChunk(data=bytes(damaged))]), timeout=RPC_TIMEOUT)
        self.assertIn(e.exception.code(), (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION))
        with self.assertRaises(grpc.RpcError):
            self.stub.ImportSession(iter([pb.SessionChunk(data=blob[:len(blob) - 7])]), timeout=RPC_TIMEOUT)
        self.assertEqual(len(self.stub.ListSessions(pb.ListSessionsRequest(), timeout=RPC_TIMEOUT).sessions), before)
        chunks = [pb.SessionChunk(data=blob[i:i + 100]) for i in range(0, len(blob), 100)]
        imported = self.stub.ImportSession(iter(chunks), timeout=RPC_TIMEOUT)
        self.assertEqual(imported.position, 5 + 2 + 4)
        a = self.generate(greedy(tokens=[42], max_tokens=8, session=imported.id))
        b = self.generate(greedy(tokens=[42], max_tokens=8, session=fork))
        self.assertEqual(a.ids, b.ids)
        for s in (imported.id, fork):
            self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=s), timeout=RPC_TIMEOUT)

    def test_bad_inputs_get_their_code_and_a_message_naming_the_field(self):
        cases = []
        r = greedy("x", max_tokens=4)
        r.sampling.top_p = 2.0
        cases.append((r, grpc.StatusCode.INVALID_ARGUMENT, "top_p"))
        cases.append((greedy(tokens=[1, 256], max_tokens=4, model="tiny"), grpc.StatusCode.INVALID_ARGUMENT,
                      "prompt_tokens[1]"))
        cases.append((greedy("x", max_tokens=4, session="no-such-session"), grpc.StatusCode.NOT_FOUND, "no-such-session"))
        cases.append((greedy("x", max_tokens=4, model="nope"), grpc.StatusCode.NOT_FOUND, "model"))
        both = greedy("x", tokens=[1], max_tokens=4)
        cases.append((both, grpc.StatusCode.INVALID_ARGUMENT, "prompt_tokens"))
        for req, code, field in cases:
            s = Stream(self.stub, req)
            self.assertEqual(s.code, code, f"{req}: {s.details}")
            self.assertIn(field, s.details)

    def test_tokenize_detokenize_round_trip(self):
        text = "In the beginning God created the heaven and the earth."
        ids = list(self.stub.Tokenize(pb.TokenizeRequest(text=text), timeout=RPC_TIMEOUT).ids)
        self.assertEqual(ids, list(text.encode()))  # a byte-level model
        back = self.stub.Detokenize(pb.DetokenizeRequest(ids=ids), timeout=RPC_TIMEOUT).text
        self.assertEqual(back, text)


if __name__ == "__main__":
    unittest.main()
