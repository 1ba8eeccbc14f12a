"""The soak's short form (issue 16): `retain load --soak` against a real retain-server on
127.0.0.1 (the shipped KJV model), then the soak's own checks: every session equal to a greedy
replay of what its client was sent, every stream's status, /metrics against the clients
(client/README.md "Soak mode"). The long form is bench/soak.sh.

Not checked here: (d), the server's VmRSS (no --server-pid). A server this young is still growing
its allocator's arenas: measured after a 4-10 s warm-up, +13 % to +33 % beyond its caches on the
first 12-15 s run, within 2 % on the runs after it, so a 20 s form cannot tell a leak from a warm-up.
bench/soak.sh checks it on the long form.

Independent truth: the replay is a fresh session fed the client's own record of the tokens; a
second run corrupts that record on purpose (--test-corrupt-history) and must fail, so the
verification is shown to catch a session that is not what its client was sent.

Run by ctest (Soak) with /usr/bin/python3; RETAIN_CLI_BIN is the `retain` binary.
"""
import json
import os
import subprocess
import unittest

import retain_testing as rt

KJV = os.path.join(rt.env_path("RETAIN_SOURCE_DIR"), "models", "rwkv7-kjv-byte")
CLI = rt.env_path("RETAIN_CLI_BIN")


class SoakTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = rt.ServerProcess(["--model", f"kjv={KJV}", "--threads", "1"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_and_check()

    def soak(self, *args):
        argv = [CLI, "--server", self.server.address, "load", "--soak", "--json", "--quiet",
                "--metrics", f"127.0.0.1:{self.server.metrics_port}",
                "--prompt-tokens", "16", "--max-tokens", "32", *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=150)
        self.assertTrue(p.stdout.strip(), f"no JSON; rc {p.returncode}; stderr:\n{p.stderr}\n{self.server.log()}")
        return p.returncode, json.loads(p.stdout), p.stderr

    def test_a_short_soak_passes_every_check(self):
        rc, r, err = self.soak("--streams", "48", "--duration", "12", "--warmup", "10")
        self.assertEqual(r["failed_checks"], [], err)
        self.assertEqual((rc, r["verdict"]), (0, "PASS"))
        # What the run must have exercised for the verdict to mean something.
        for action in ("create", "to_end", "stop", "cancel", "drop", "deadline", "slow", "fork", "export_import",
                       "verify"):
            self.assertGreater(r["actions"].get(action, 0), 0, action)
        for end in ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "DROPPED"):
            self.assertGreater(r["ends"].get(end, 0), 0, end)
        # Never FAILED_PRECONDITION: an empty prompt continues a session however its last stream
        # ended (a cut inside its prompt included).
        self.assertEqual(set(r["ends"]) - {"OK", "CANCELLED", "DEADLINE_EXCEEDED", "DROPPED", "RESOURCE_EXHAUSTED"}, set())
        self.assertGreater(r["sessions_verified"], 48)
        self.assertEqual(r["sessions_mismatched"], 0)
        self.assertEqual(r["tokens_read"] + r["tokens_sent_unread"], r["server_generated_tokens"])

    def test_the_verifier_catches_a_history_that_is_not_what_was_sent(self):
        rc, r, err = self.soak("--streams", "4", "--duration", "2", "--test-corrupt-history", "1")
        self.assertEqual((rc, r["verdict"]), (3, "FAIL"), err)
        self.assertGreater(r["histories_corrupted"], 0)
        self.assertEqual(r["sessions_mismatched"], r["histories_corrupted"])
        for check in r["failed_checks"]:
            self.assertIn("is not its replay", check)


if __name__ == "__main__":
    unittest.main()
