"""The Redis state tier (issue 17) with real processes on 127.0.0.1: a redis-server of its own and
two retain-server replicas sharing it.

Independent truth: the same turns run on one replica that never loses its session (a fresh session
made with the same prefix, continued the same way); greedy decoding makes both exact.

Run by ctest (RedisTier) with /usr/bin/python3; PYTHONPATH = the generated stubs and this folder.
"""
import os
import unittest
import urllib.request

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt

TIMEOUT = 60.0
KJV = os.path.join(rt.env_path("RETAIN_SOURCE_DIR"), "models", "rwkv7-kjv-byte")
STATE_BYTES = 104448  # the KJV model's session state
PREFIX = list(b"In the beginning God created")


def greedy(session, tokens=(), max_tokens=12):
    return rt.greedy(tokens, max_tokens, session)


def run(stub, req):
    ids = []
    for r in stub.Generate(req, timeout=TIMEOUT):
        if r.WhichOneof("event") == "token":
            ids.append(r.token.id)
    return ids


def stub(server):
    return pbg.RetainStub(grpc.insecure_channel(server.address))


def reference(prompts, turns):
    """Each prompt's session on one server without Redis, through every turn: [session][turn] ids."""
    with rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1"]) as ref:
        s = stub(ref)
        ids = [s.CreateSession(pb.CreateSessionRequest(prefix_tokens=p), timeout=TIMEOUT).id for p in prompts]
        return [[run(s, greedy(i, t)) for t in turns] for i in ids]


def health_status(server, service):
    """grpc.health.v1.Health/Check by hand (Debian has no grpc_health module): 1 SERVING, 2 NOT_SERVING."""
    name = service.encode()
    check = grpc.insecure_channel(server.address).unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    reply = check(b"\x0a" + bytes([len(name)]) + name if name else b"", timeout=10)
    return reply[1] if len(reply) >= 2 and reply[0] == 0x08 else 0


def metric(server, name, labels):
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class RedisTierTest(unittest.TestCase):
    def setUp(self):
        self.redis = rt.RedisServer()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        self.redis.stop()

    def replica(self, *extra, name=None):
        s = rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1", "--redis", f"127.0.0.1:{self.redis.port}",
                              "--redis-lease-ms", "3000", *extra] + (["--replica-id", name] if name else []))
        self.servers.append(s)
        return s

    def stub(self, server):
        return stub(server)

    def reference(self, turns):
        """The turns on one server without Redis, its session never moved."""
        return reference([PREFIX], turns)[0]

    def turn_then_sigkill(self):
        """A session made and continued once on replica a, which is then SIGKILLed; replica b
        (which never held the session), its stub, the session and the turn's tokens."""
        a, b = self.replica(name="a"), self.replica(name="b")
        sa = self.stub(a)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        first = run(sa, greedy(sid))
        a.proc.kill()
        a.proc.wait()
        return b, self.stub(b), sid, first

    def test_sigkill_then_continue_on_other_replica(self):
        b, sb, sid, first = self.turn_then_sigkill()
        info = sb.GetSession(pb.GetSessionRequest(session_id=sid), timeout=TIMEOUT)
        self.assertEqual(info.position, len(PREFIX) + len(first))
        self.assertEqual(info.tier, "redis")  # b has not restored it yet
        second = run(sb, greedy(sid, list(b" and")))
        # Its record was read before the engine's lock (Prefetch), and found still the latest.
        self.assertEqual(metric(b, "retain_tier_prefetched_restores_total", {"tier": "redis"}), 1)
        self.assertEqual([first, second], self.reference([[], list(b" and")]))

    def test_turns_alternating_between_replicas(self):
        # Each replica keeps its own resident copy; the one that did not run the last turn must
        # see that Redis holds a newer state and use it, not its stale copy.
        a, b = self.replica(name="a"), self.replica(name="b")
        sa, sb = self.stub(a), self.stub(b)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        turns = [[], list(b" the"), list(b" and"), []]
        got = [run([sa, sb][i % 2], greedy(sid, t)) for i, t in enumerate(turns)]
        self.assertEqual(got, self.reference(turns))

    def test_concurrent_request_on_other_replica_is_refused(self):
        a, b = self.replica(name="a"), self.replica(name="b")
        sa, sb = self.stub(a), self.stub(b)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        long = sa.Generate(greedy(sid, max_tokens=2000), timeout=TIMEOUT)
        next(long)  # started: the lease is held
        with self.assertRaises(grpc.RpcError) as e:
            run(sb, greedy(sid))
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("replica a", e.exception.details())
        long.cancel()
        self.assertGreaterEqual(metric(b, "retain_tier_lease_conflicts_total", {"tier": "redis"}), 1)

    def test_damaged_or_foreign_record_is_never_served(self):
        a, b = self.replica(name="a"), self.replica(name="b")
        sa, sb = self.stub(a), self.stub(b)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        run(sa, greedy(sid))
        key = f"retain:session:{sid}"
        state = bytearray(self.redis.command("HGET", key, "state"))
        state[len(state) // 2] ^= 0x01
        self.redis.command("HSET", key, "state", bytes(state))
        with self.assertRaises(grpc.RpcError) as e:
            run(sb, greedy(sid))
        self.assertEqual(e.exception.code(), grpc.StatusCode.DATA_LOSS)
        self.assertEqual(metric(b, "retain_tier_refused_total", {"tier": "redis"}), 1)
        # A record claiming to be another model's is no session of this one.
        self.redis.command("HSET", key, "fp", "123")
        with self.assertRaises(grpc.RpcError) as e:
            sb.GetSession(pb.GetSessionRequest(session_id=sid), timeout=TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_more_sessions_than_slots_all_continue_exactly(self):
        a = self.replica("--state-budget-bytes", str(2 * STATE_BYTES))
        sa = self.stub(a)
        prompts = [list(b"And God said"), list(b"Let there be"), list(b"In the beginning"), list(b"The earth was")]
        ids = [sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=p), timeout=TIMEOUT).id for p in prompts]
        got = [run(sa, greedy(i)) for i in ids] + [run(sa, greedy(i, list(b" and"))) for i in ids]
        want = reference(prompts, [[], list(b" and")])
        self.assertEqual(got, [w[0] for w in want] + [w[1] for w in want])
        self.assertGreater(metric(a, "retain_tier_restores_total", {"tier": "redis"}), 0)

    def test_redis_down_serves_held_sessions_and_recovers(self):
        a = self.replica("--redis-timeout-ms", "200")
        sa = self.stub(a)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        first = run(sa, greedy(sid))
        port = self.redis.port
        self.redis.stop()
        second = run(sa, greedy(sid, list(b" and")))  # held here: served while Redis is down
        self.assertEqual([first, second], self.reference([[], list(b" and")]))
        self.assertEqual(metric(a, "retain_tier_up", {"tier": "redis"}), 0)
        self.assertEqual(health_status(a, "retain.tier.redis"), 2)
        self.assertEqual(health_status(a, ""), 1)
        with self.assertRaises(grpc.RpcError) as e:  # not held here: cannot be served
            run(sa, greedy("0123456789abcdef0123456789abcdef"))
        self.assertIn(e.exception.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND))
        self.redis = rt.RedisServer(port=port)
        self.assertTrue(rt.wait_until(lambda: metric(a, "retain_tier_up", {"tier": "redis"}) == 1, timeout=20))
        # The write that failed is redone: Redis holds the state after the second turn.
        want = str(len(PREFIX) + len(first) + 4 + len(second)).encode()
        self.assertTrue(rt.wait_until(lambda: self.redis.command("HGET", f"retain:session:{sid}", "position") == want,
                                      timeout=20))
        self.assertEqual(health_status(a, "retain.tier.redis"), 1)

    def test_export_and_fork_of_a_session_only_in_redis(self):
        # Both restore it on b, reading the record before the engine's lock; the exported copy
        # continues, on a server without Redis, as the session that never moved.
        b, sb, sid, first = self.turn_then_sigkill()
        chunks = list(sb.ExportSession(pb.ExportSessionRequest(session_id=sid), timeout=TIMEOUT))
        self.assertEqual(metric(b, "retain_tier_prefetched_restores_total", {"tier": "redis"}), 1)
        fork = sb.ForkSession(pb.ForkSessionRequest(session_id=sid), timeout=TIMEOUT)
        self.assertEqual(fork.position, len(PREFIX) + len(first))
        with rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1"]) as alone:
            stub = self.stub(alone)
            imported = stub.ImportSession(iter(chunks), timeout=TIMEOUT)
            second = run(stub, greedy(imported.id, list(b" and")))
        self.assertEqual([first, second], self.reference([[], list(b" and")]))
        self.assertEqual(run(sb, greedy(fork.id, list(b" and"))), second)

    def test_async_window(self):
        a, b = self.replica("--redis-async", name="a"), self.replica("--redis-async", name="b")
        sa, sb = self.stub(a), self.stub(b)
        sid = sa.CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        first = run(sa, greedy(sid))
        # The documented window: once the queued writes are done, a lost replica loses nothing.
        self.assertTrue(rt.wait_until(lambda: metric(a, "retain_tier_pending_writes", {"tier": "redis"}) == 0))
        a.proc.kill()
        a.proc.wait()
        second = run(sb, greedy(sid, list(b" and")))
        self.assertEqual([first, second], self.reference([[], list(b" and")]))


if __name__ == "__main__":
    unittest.main()
