"""The Redis tier (issue 17) on the topologies a user outgrows one Redis with, all real processes on
127.0.0.1: a password-protected Redis (AUTH), a three-master Redis Cluster (with a slot migrated
under the replicas' feet, so MOVED and ASK are followed), and a master, a replica and a Sentinel
that fails the master over.

Independent truth, as in test_redis_tier: the same turns on one server without Redis whose session
never moved; greedy decoding makes both exact.

Run by ctest (RedisTopologies) with /usr/bin/python3; PYTHONPATH = the generated stubs and this folder.
"""
import os
import socket
import subprocess
import tempfile
import unittest

import grpc

from retain.v1 import retain_pb2 as pb

import retain_testing as rt
from test_redis_tier import KJV, PREFIX, TIMEOUT, greedy, health_status, metric, reference, run, stub


class Topology(unittest.TestCase):
    def setUp(self):
        self.redises, self.servers = [], []

    def tearDown(self):
        for s in self.servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        for r in self.redises:
            r.stop()

    def redis(self, extra=(), **kw):
        r = rt.RedisServer(args=(*rt.RedisServer.NO_PERSISTENCE, *extra), **kw)
        self.redises.append(r)
        return r

    def replica(self, *redis_args, name):
        s = rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1", "--redis-lease-ms", "3000",
                              "--redis-timeout-ms", "300", "--replica-id", name, *redis_args])
        self.servers.append(s)
        return s

    def kill(self, server):
        server.proc.kill()
        server.proc.wait()


class AuthTest(Topology):
    def test_password_from_file_and_a_wrong_one(self):
        r = self.redis(password="s3cret-pass")
        d = tempfile.mkdtemp(prefix="retain-auth-")
        good, wrong = os.path.join(d, "good"), os.path.join(d, "wrong")
        with open(good, "w") as f:
            f.write("s3cret-pass\n")  # as a mounted secret often ends
        with open(wrong, "w") as f:
            f.write("not-it")
        a = self.replica("--redis", f"127.0.0.1:{r.port}", "--redis-password-file", good, name="a")
        sid = stub(a).CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        first = run(stub(a), greedy(sid))
        self.kill(a)
        b = self.replica("--redis", f"127.0.0.1:{r.port}", "--redis-password-file", good, name="b")
        second = run(stub(b), greedy(sid, list(b" and")))
        self.assertEqual([[first, second]], reference([PREFIX], [[], list(b" and")]))

        c = self.replica("--redis", f"127.0.0.1:{r.port}", "--redis-password-file", wrong, name="c")
        self.assertTrue(rt.wait_until(lambda: health_status(c, "retain.tier.redis") == 2, timeout=20))
        self.assertEqual(metric(c, "retain_tier_up", {"tier": "redis"}), 0)
        self.assertIn("refused AUTH", c.log())
        self.assertNotIn("not-it", c.log())  # the password is never logged
        with self.assertRaises(grpc.RpcError) as e:
            run(stub(c), greedy(sid))
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_flag_errors_name_the_flag(self):
        for args, flag in [(["--redis", "127.0.0.1:1", "--redis-password-file", "/nonexistent/p"],
                            "--redis-password-file"),
                           (["--redis", "127.0.0.1:1", "--redis-cluster", "127.0.0.1:2"], "--redis"),
                           (["--redis-sentinel", "127.0.0.1:1"], "--redis-sentinel-master"),
                           (["--redis-cluster", "127.0.0.1:1,nope"], "--redis-cluster")]:
            p = subprocess.run([rt.env_path("RETAIN_SERVER_BIN"), "--model", f"kjv={KJV}", *args],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(flag, p.stderr, args)


def cluster_port():
    """A port for a cluster node: Redis wants it <= 55535 and its bus port (+10000) free too."""
    for _ in range(200):
        p = rt.free_port()
        if p <= 55535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + 10000))
                return p
            except OSError:
                pass
    raise RuntimeError("no port free for a cluster node")


class FullRedisTest(Topology):
    def test_a_full_redis_is_resource_exhausted(self):
        # maxmemory below what Redis itself uses, with noeviction (what deploy/k8s/redis runs):
        # every write is refused with OOM. A request on a session must say RESOURCE_EXHAUSTED,
        # and requests that need no Redis write keep being served.
        r = self.redis(extra=["--maxmemory-policy", "noeviction"])
        a = self.replica("--redis", f"127.0.0.1:{r.port}", name="a")
        sid = stub(a).CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        r.command("CONFIG", "SET", "maxmemory", "1mb")
        with self.assertRaises(grpc.RpcError) as e:
            run(stub(a), greedy(sid))
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        with self.assertRaises(grpc.RpcError) as e:
            stub(a).CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("maxmemory", e.exception.details())
        self.assertEqual([x.id for x in stub(a).ListSessions(pb.ListSessionsRequest(), timeout=TIMEOUT).sessions], [sid])
        self.assertEqual(len(run(stub(a), rt.greedy(PREFIX, 8))), 8)  # no session: no Redis
        self.assertEqual(metric(a, "retain_tier_up", {"tier": "redis"}), 1)  # full is not down
        r.command("CONFIG", "SET", "maxmemory", "0")  # room again: the session goes on as if never refused
        self.assertEqual([run(stub(a), greedy(sid))], reference([PREFIX], [[]])[0])


class ClusterTest(Topology):
    def cluster(self, n=3):
        nodes = [self.redis(port=cluster_port(), extra=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                   "--cluster-config-file", "nodes.conf"]) for _ in range(n)]
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{r.port}" for r in nodes], "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.assertTrue(rt.wait_until(
            lambda: all(b"cluster_state:ok" in r.command("CLUSTER", "INFO") for r in nodes), timeout=30))
        return nodes

    def owner(self, nodes, key):
        for r in nodes:
            try:
                if r.command("EXISTS", key) == 1:
                    return r
            except RuntimeError as e:  # MOVED: not this node's slot
                if not str(e).startswith("MOVED"):
                    raise
        return None

    @staticmethod
    def slot_owner(node, slot):
        """Whether `node` is the master serving `slot` (from its own CLUSTER SLOTS)."""
        for lo, hi, master, *_ in node.command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return master[1] == node.port
        return False

    def migrate(self, nodes, slot, source, target):
        """Moves `slot` from `source` to `target` the way redis-cli --cluster reshard does."""
        src, dst = source.command("CLUSTER", "MYID").decode(), target.command("CLUSTER", "MYID").decode()
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst)
        keys = source.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if keys:
            source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for r in [target, source] + [r for r in nodes if r not in (source, target)]:
            r.command("CLUSTER", "SETSLOT", slot, "NODE", dst)

    def test_sessions_spread_over_masters_survive_a_replica_and_a_resharding(self):
        nodes = self.cluster()
        a = self.replica("--redis-cluster", f"127.0.0.1:{nodes[0].port}", name="a")
        b = self.replica("--redis-cluster", f"127.0.0.1:{nodes[2].port}", name="b")
        prompts = [list(p) for p in (b"And God said", b"Let there be", b"In the beginning", b"The earth was",
                                     b"And the evening", b"And the spirit")]
        ids = [stub(a).CreateSession(pb.CreateSessionRequest(prefix_tokens=p), timeout=TIMEOUT).id for p in prompts]
        # b reads its slot map now, before the resharding below makes it stale.
        self.assertEqual(stub(b).GetSession(pb.GetSessionRequest(session_id=ids[0]), timeout=TIMEOUT).position,
                         len(prompts[0]))
        got = [[run(stub(a), greedy(i))] for i in ids]
        owners = {self.owner(nodes, f"retain:session:{i}").port for i in ids}
        self.assertGreater(len(owners), 1, "six sessions on one master of three: the keys are not spread")

        moved = ids[0]
        key = f"retain:session:{moved}"
        slot = nodes[0].command("CLUSTER", "KEYSLOT", key)
        source = self.owner(nodes, key)
        target = next(r for r in nodes if r is not source)
        self.migrate(nodes, slot, source, target)
        self.assertEqual(target.command("EXISTS", key), 1)

        got[0].append(run(stub(a), greedy(moved, list(b" the"))))  # a's map is stale: MOVED
        self.kill(a)
        for n, i in enumerate(ids):  # b's map is stale too for the moved one
            if n == 0:
                got[n].append(run(stub(b), greedy(i, list(b" and"))))
            else:
                got[n] += [run(stub(b), greedy(i, list(b" the"))), run(stub(b), greedy(i, list(b" and")))]
        want = reference(prompts, [[], list(b" the"), list(b" and")])
        self.assertEqual(got, want)
        self.assertEqual(metric(b, "retain_tier_up", {"tier": "redis"}), 1)

        # A slot caught mid-migration: the lease key of a session, which exists only while a
        # request runs, is created and deleted in the slot's new home, reached by ASK.
        lease = f"retain:lease:{ids[1]}"
        lslot = nodes[0].command("CLUSTER", "KEYSLOT", lease)
        lsource = next(r for r in nodes if self.slot_owner(r, lslot))
        ltarget = next(r for r in nodes if r is not lsource)
        ltarget.command("CLUSTER", "SETSLOT", lslot, "IMPORTING", lsource.command("CLUSTER", "MYID").decode())
        lsource.command("CLUSTER", "SETSLOT", lslot, "MIGRATING", ltarget.command("CLUSTER", "MYID").decode())
        more = run(stub(b), greedy(ids[1], list(b" the")))
        self.assertEqual(more, reference([prompts[1]], [[], list(b" the"), list(b" and"), list(b" the")])[0][3])
        self.assertEqual(metric(b, "retain_tier_unleased_total", {"tier": "redis"}), 0)  # every lease was taken
        self.assertEqual(metric(b, "retain_tier_up", {"tier": "redis"}), 1)
        self.assertEqual(health_status(b, "retain.tier.redis"), 1)


class SentinelTest(Topology):
    def test_failover_to_the_replica_loses_no_written_turn(self):
        master = self.redis()
        standby = self.redis(extra=["--replicaof", "127.0.0.1", str(master.port)])
        sentinel = self.redis(sentinel_conf="\n".join([
            f"sentinel monitor retain 127.0.0.1 {master.port} 1",
            "sentinel down-after-milliseconds retain 1000",
            "sentinel failover-timeout retain 4000", ""]))
        args = ["--redis-sentinel", f"127.0.0.1:{sentinel.port}", "--redis-sentinel-master", "retain"]
        a = self.replica(*args, name="a")
        sid = stub(a).CreateSession(pb.CreateSessionRequest(prefix_tokens=PREFIX), timeout=TIMEOUT).id
        first = run(stub(a), greedy(sid))
        key = f"retain:session:{sid}"
        want_position = str(len(PREFIX) + len(first)).encode()
        # Replication is asynchronous (the documented window): the test waits it out, as a real
        # deployment cannot; what it checks is that the replicas follow the failover.
        self.assertTrue(rt.wait_until(lambda: standby.command("HGET", key, "position") == want_position, timeout=20))
        master.stop()
        # The next turn runs while the master is gone (held here: served, its write remembered); the
        # replica then finds the new master through the Sentinel and redoes the write there.
        second = run(stub(a), greedy(sid, list(b" and")))
        self.assertTrue(rt.wait_until(
            lambda: sentinel.command("SENTINEL", "get-master-addr-by-name", "retain")[1] == str(standby.port).encode(),
            timeout=30), "the sentinel did not fail over")
        after_second = str(len(PREFIX) + len(first) + 4 + len(second)).encode()
        self.assertTrue(rt.wait_until(lambda: standby.command("HGET", key, "position") == after_second, timeout=30))
        self.assertTrue(rt.wait_until(lambda: metric(a, "retain_tier_up", {"tier": "redis"}) == 1, timeout=10))
        self.kill(a)
        b = self.replica(*args, name="b")
        third = run(stub(b), greedy(sid))
        self.assertEqual([[first, second, third]], reference([PREFIX], [[], list(b" and"), []]))
        self.assertEqual(standby.command("HGET", key, "position"),
                         str(len(PREFIX) + len(first) + 4 + len(second) + len(third)).encode())


if __name__ == "__main__":
    unittest.main()
