"""Checkpoints, rewind and the shared prefix-state cache through the real RPCs of retain-server
(RewindSession, ForkSession.position, Session.checkpoint_positions, Usage.cached_tokens and the
retain_checkpoint*/retain_prefix_cache* metrics). Run by ctest with Debian's python3-grpcio, as
test_service.

Independent truth: a fresh session created with the same tokens as its prefix (CreateSession),
and, for the prefix cache, a second server with the cache off.
"""
import concurrent.futures
import os
import re
import secrets
import tempfile
import unittest
import urllib.request

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt

RPC_TIMEOUT = 120.0
TURNS = ["In the beginning ", "And God said, ", "Let there be ", "and there was ", "And the evening ",
         "and the morning "]


def greedy(tokens=(), max_tokens=12, session="", seed=None, temperature=0.0):
    req = pb.GenerateRequest(session_id=session)
    req.prompt_tokens.extend(tokens)
    req.sampling.temperature = temperature
    if seed is not None:
        req.sampling.seed = seed
    req.stopping.max_tokens = max_tokens
    req.stopping.ignore_eos = True
    return req


def run(stub, req, metadata=None):
    """(token ids, finished) of a whole Generate stream."""
    ids, finished = [], None
    for r in stub.Generate(req, timeout=RPC_TIMEOUT, metadata=metadata):
        if r.WhichOneof("event") == "token":
            ids.append(r.token.id)
        elif r.WhichOneof("event") == "finished":
            finished = r.finished
    return ids, finished


def byte_tokens(text):
    return list(text.encode())


def metrics_port(server):
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", server.log())
    if not m:
        raise AssertionError(f"no metrics address in the server's log:\n{server.log()}")
    return int(m.group(1))


def scrape(server, name):
    """The value of the `name` series (model label only) on the server's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(server)}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{name}\{{model=\"[^\"]+\"\}} (\S+)$", text, re.M)
    if not m:
        raise AssertionError(f"{name} not in /metrics:\n{text[:3000]}")
    return float(m.group(1))


class Server:
    def __init__(self, *args):
        self.process = rt.ServerProcess(["--threads", "1", *args])
        self.channel = grpc.insecure_channel(self.process.address)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = pbg.RetainStub(self.channel)

    def close(self):
        self.channel.close()
        self.process.stop_and_check()


class RewindTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--prefix-cache-bytes", "0")
        cls.addClassCleanup(cls.server.close)
        cls.stub = cls.server.stub

    def six_turns(self):
        """A session after six turns: (id, all its tokens, the position after each turn)."""
        s = self.stub.CreateSession(pb.CreateSessionRequest(), timeout=RPC_TIMEOUT)
        tokens, ends = [], []
        for turn in TURNS:
            prompt = byte_tokens(turn)
            ids, finished = run(self.stub, greedy(prompt, session=s.id))
            tokens += prompt + ids
            ends.append(len(tokens))
            self.assertEqual(finished.position, len(tokens))
        return s.id, tokens, ends

    def fresh_continuation(self, tokens, n=8):
        """What a session created with `tokens` as its prefix generates next."""
        s = self.stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=tokens), timeout=RPC_TIMEOUT)
        ids, _ = run(self.stub, greedy(max_tokens=n, session=s.id))
        self.stub.DeleteSession(pb.DeleteSessionRequest(session_id=s.id), timeout=RPC_TIMEOUT)
        return ids

    def test_rewind_to_every_turn_boundary_and_between_continues_as_a_fresh_session(self):
        sid, tokens, ends = self.six_turns()
        info = self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        self.assertEqual(list(info.checkpoint_positions), [e - 1 for e in ends])
        self.assertEqual(info.history_start, 0)
        # Latest first, so each rewind goes back from where the last continuation left it.
        targets = sorted(set(ends + [ends[1] + 3, ends[3] - 7, 1]), reverse=True)
        for p in targets:
            with self.subTest(position=p):
                after = self.stub.RewindSession(pb.RewindSessionRequest(session_id=sid, position=p),
                                                timeout=RPC_TIMEOUT)
                self.assertEqual(after.position, p)
                self.assertTrue(all(c <= p for c in after.checkpoint_positions))
                ids, finished = run(self.stub, greedy(max_tokens=8, session=sid))
                self.assertEqual(ids, self.fresh_continuation(tokens[:p]))
                self.assertEqual(finished.position, p + 8)

    def test_regenerate_with_another_seed_and_concurrent_sessions_are_untouched(self):
        sid, tokens, ends = self.six_turns()
        prefix = byte_tokens("And the earth ")
        other = self.stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=prefix), timeout=RPC_TIMEOUT)
        user_end = ends[-2] + len(TURNS[-1])
        outputs, side = {}, []
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for seed in (1, 2, 1):
                self.stub.RewindSession(pb.RewindSessionRequest(session_id=sid, position=user_end), timeout=RPC_TIMEOUT)
                # Another session streams meanwhile; it must see nothing of the rewinds.
                streaming = pool.submit(run, self.stub, greedy(max_tokens=6, session=other.id))
                ids, _ = run(self.stub, greedy(max_tokens=10, session=sid, seed=seed, temperature=1.0))
                outputs.setdefault(seed, []).append(ids)
                side += streaming.result()[0]
        self.assertEqual(outputs[1][0], outputs[1][1], "the same seed from the same rewind point")
        self.assertNotEqual(outputs[1][0], outputs[2][0])
        # The other session's tokens are those of a session fed the same way with no rewinds around.
        self.assertEqual(side, self.fresh_continuation(prefix, 18))

    def test_fork_at_a_position_and_edit_an_earlier_turn(self):
        sid, tokens, ends = self.six_turns()
        fork = self.stub.ForkSession(pb.ForkSessionRequest(session_id=sid, position=ends[2]), timeout=RPC_TIMEOUT)
        self.assertEqual(fork.position, ends[2])
        self.assertNotEqual(fork.id, sid)
        src = self.stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        self.assertEqual(src.position, ends[-1])
        edit = byte_tokens("And Moses said, ")
        ids, _ = run(self.stub, greedy(edit, max_tokens=8, session=fork.id))
        self.assertEqual(ids, self.fresh_continuation(tokens[:ends[2]] + edit))

    def test_rewinds_past_the_history_are_refused_clearly(self):
        sid, tokens, ends = self.six_turns()
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.RewindSession(pb.RewindSessionRequest(session_id=sid, position=ends[-1] + 1), timeout=RPC_TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("position", e.exception.details())
        # An imported session knows nothing before its import position.
        chunks = list(self.stub.ExportSession(pb.ExportSessionRequest(session_id=sid), timeout=RPC_TIMEOUT))
        imported = self.stub.ImportSession(iter(chunks), timeout=RPC_TIMEOUT)
        self.assertEqual(imported.history_start, ends[-1] - 1)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.RewindSession(pb.RewindSessionRequest(session_id=imported.id, position=ends[2]),
                                    timeout=RPC_TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("no longer known", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.ForkSession(pb.ForkSessionRequest(session_id=imported.id, position=3), timeout=RPC_TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        listed = self.stub.ListSessions(pb.ListSessionsRequest(), timeout=RPC_TIMEOUT)
        self.assertEqual(sum(1 for s in listed.sessions if s.position == 3), 0, "a failed fork is never left behind")


class CheckpointBudgetTest(unittest.TestCase):
    def test_budget_exhaustion_drops_the_oldest_and_is_reported(self):
        probe = Server()
        state_bytes = probe.stub.ListModels(pb.ListModelsRequest(), timeout=RPC_TIMEOUT).models[0].state_bytes
        probe.close()
        # Room for three checkpoints (each is the state plus a small header).
        server = Server("--checkpoint-budget-bytes", str(3 * state_bytes + 3 * 4096))
        self.addCleanup(server.close)
        stub = server.stub
        a = stub.CreateSession(pb.CreateSessionRequest(), timeout=RPC_TIMEOUT)
        b = stub.CreateSession(pb.CreateSessionRequest(), timeout=RPC_TIMEOUT)
        for sid, text in [(a.id, "In the "), (b.id, "And the "), (a.id, "beginning "), (b.id, "earth ")]:
            run(stub, greedy(byte_tokens(text), max_tokens=4, session=sid))
        info = stub.GetSession(pb.GetSessionRequest(session_id=a.id), timeout=RPC_TIMEOUT)
        self.assertEqual(list(info.checkpoint_positions), [info.position - 1], "a's first was the oldest")
        self.assertEqual(scrape(server.process, "retain_checkpoints_dropped_total"), 1)
        self.assertEqual(scrape(server.process, "retain_checkpoints"), 3)
        self.assertLessEqual(scrape(server.process, "retain_checkpoint_bytes"), 3 * state_bytes + 3 * 4096)
        # a can still go back before it: it knows its tokens from position 0.
        stub.RewindSession(pb.RewindSessionRequest(session_id=a.id, position=3), timeout=RPC_TIMEOUT)
        ids, _ = run(stub, greedy(max_tokens=5, session=a.id))
        fresh = stub.CreateSession(pb.CreateSessionRequest(prefix_tokens=byte_tokens("In ")), timeout=RPC_TIMEOUT)
        want, _ = run(stub, greedy(max_tokens=5, session=fresh.id))
        self.assertEqual(ids, want)


def system_prompt(n=1000):
    text = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. ")
    return (byte_tokens(text) * (n // len(text) + 1))[:n]


class PrefixCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.tmp.cleanup)
        cls.alice, cls.bob = secrets.token_hex(16), secrets.token_hex(16)
        tokens = os.path.join(cls.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write(f"alice {cls.alice}\nbob {cls.bob}\n")
        cls.cached = Server("--prefix-cache-bytes", "256MiB", "--prefix-block", "256", "--max-batch", "64")
        cls.addClassCleanup(cls.cached.close)
        cls.uncached = Server("--prefix-cache-bytes", "0")
        cls.addClassCleanup(cls.uncached.close)
        cls.tenants = Server("--prefix-cache-bytes", "256MiB", "--auth-tokens", tokens)
        cls.addClassCleanup(cls.tenants.close)
        cls.shared = Server("--prefix-cache-bytes", "256MiB", "--auth-tokens", tokens, "--prefix-cache-shared")
        cls.addClassCleanup(cls.shared.close)

    def test_32_concurrent_requests_share_a_1000_token_system_prompt(self):
        system = system_prompt()
        suffixes = [byte_tokens(f" Question {i}: who said {'let there be light' if i % 2 else 'amen'}?")
                    for i in range(32)]
        stub = self.cached.stub
        first_ids, first = run(stub, greedy(system + suffixes[0], max_tokens=6))
        self.assertEqual(first.usage.cached_tokens, 0)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            cached = list(pool.map(lambda s: run(stub, greedy(system + s, max_tokens=6)), suffixes))
            plain = list(pool.map(lambda s: run(self.uncached.stub, greedy(system + s, max_tokens=6)), suffixes))
        self.assertEqual(first_ids, plain[0][0])
        for i, ((ids, fin), (want, plain_fin)) in enumerate(zip(cached, plain)):
            with self.subTest(request=i):
                self.assertGreaterEqual(fin.usage.cached_tokens, 768)
                self.assertEqual(fin.usage.prompt_tokens, len(system) + len(suffixes[i]))
                self.assertEqual(plain_fin.usage.cached_tokens, 0)
                self.assertEqual(ids, want)
        self.assertGreaterEqual(scrape(self.cached.process, "retain_prefix_cache_hits_total"), 32)
        self.assertGreaterEqual(scrape(self.cached.process, "retain_prefix_cache_hit_tokens_total"), 32 * 768)
        self.assertGreater(scrape(self.cached.process, "retain_prefix_cache_bytes"), 0)
        self.assertEqual(scrape(self.uncached.process, "retain_prefix_cache_hits_total"), 0)

    def test_two_tenants_never_share_an_entry_unless_allowed(self):
        prompt = system_prompt(600)
        auth = lambda token: [("authorization", f"Bearer {token}")]
        for server, shared in [(self.tenants, False), (self.shared, True)]:
            with self.subTest(shared=shared):
                _, a = run(server.stub, greedy(prompt, max_tokens=4), auth(self.alice))
                _, b = run(server.stub, greedy(prompt, max_tokens=4), auth(self.bob))
                _, a2 = run(server.stub, greedy(prompt, max_tokens=4), auth(self.alice))
                self.assertEqual(a.usage.cached_tokens, 0)
                self.assertEqual(b.usage.cached_tokens, 512 if shared else 0)
                self.assertEqual(a2.usage.cached_tokens, 512)


if __name__ == "__main__":
    unittest.main()
