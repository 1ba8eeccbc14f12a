"""`retain`, the command-line client, against a real retain-server on the shipped default model.
Run by ctest: /usr/bin/python3 -m unittest test_cli, with $RETAIN_CLI_BIN, $RETAIN_SERVER_BIN,
$RETAIN_RUN_BIN and $RETAIN_SOURCE_DIR set (tests/CMakeLists.txt)."""
import json
import os
import socket
import subprocess
import tempfile
import unittest

import retain_testing as rt

DEFAULT_MODEL = "rwkv7-kjv-byte"


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = rt.env_path("RETAIN_CLI_BIN")
        cls.retain_run = rt.env_path("RETAIN_RUN_BIN")
        cls.server = rt.ServerProcess(["--threads", "1"])  # no --model: the shipped default model
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        cls.server.stop_and_check()

    def run_cli(self, *args, expect=0, server=True, env=None, timeout=120):
        argv = [self.cli] + (["--server", self.server.address] if server else []) + list(args)
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if expect is not None:
            self.assertEqual(p.returncode, expect, f"{argv}\nstdout: {out}\nstderr: {err}\nserver:\n{self.server.log()}")
        return out, err, p.returncode

    def greedy(self, *args, tokens=20):
        return ["generate", "--temperature", "0", "--max-tokens", str(tokens), *args]

    def test_help_and_usage_errors(self):
        out, _, _ = self.run_cli("--help", server=False)
        self.assertIn("generate", out)
        self.assertIn("exit codes", out)
        out, _, _ = self.run_cli("generate", "-h", server=False)
        self.assertIn("--temperature", out)
        self.run_cli(server=False, expect=2)                               # no subcommand
        self.run_cli("generate", "--no-such-flag", "x", expect=2)
        self.run_cli("generate", "--temperature", "warm", "x", expect=2)   # not a number
        _, err, _ = self.run_cli("generate", "--tokens", "1 two 3", expect=2)
        self.assertIn("two", err)
        self.run_cli("load", "--streams", "5000", "--duration", "1", "--prompt-tokens", "1", "--max-tokens", "1", expect=2)
        self.run_cli("load", "--streams", "1", "--duration", "4000", "--prompt-tokens", "1", "--max-tokens", "1", expect=2)
        _, err, _ = self.run_cli("load", "--streams", "1", "--conversations", "1", "--max-tokens", "1", expect=2)
        self.assertIn("exactly one", err)

    def test_models_lists_the_default_model(self):
        out, _, _ = self.run_cli("models")
        rows = [line.split() for line in out.splitlines()[1:]]
        self.assertEqual([r[0] for r in rows], [DEFAULT_MODEL])
        self.assertEqual(rows[0][-1], "yes")
        out, _, _ = self.run_cli("models", "--json")
        models = json.loads(out)
        self.assertEqual(len(models), 1)
        self.assertEqual(models[0]["name"], DEFAULT_MODEL)
        self.assertTrue(models[0]["is_default"])
        self.assertEqual(models[0]["vocab_size"], 256)

    def test_the_server_address_comes_from_the_environment_too(self):
        env = dict(os.environ, RETAIN_SERVER=self.server.address)
        out, _, _ = self.run_cli("models", server=False, env=env)
        self.assertIn(DEFAULT_MODEL, out)

    def test_greedy_generate_prints_what_retain_run_prints(self):
        out, err, _ = self.run_cli(*self.greedy("And God said"))
        ref = subprocess.run([self.retain_run, "--prompt", "And God said", "--temperature", "0", "--max-tokens", "20"],
                             capture_output=True, timeout=120, check=True).stdout.decode()
        self.assertEqual(out, ref)
        self.assertGreater(len(out.strip()), 0)
        self.assertIn("reason=LENGTH", err)
        self.assertIn("tokens=20", err)
        self.assertIn("position=32", err)  # 12 prompt bytes + 20
        self.assertIn("ttft=", err)

    def test_stop_strings_and_stop_token_ids_are_repeatable(self):
        full, _, _ = self.run_cli(*self.greedy("And God said", tokens=40))
        self.assertIn("shalt", full)
        out, err, _ = self.run_cli(*self.greedy("--stop", "shalt", "--stop", "zzz", "And God said", tokens=40))
        self.assertEqual(out, full[:full.index("shalt")] + "\n")  # the stop text is not printed
        self.assertIn('reason=STOP stop="shalt"', err)
        stop_id = ord(full[3])
        out, err, _ = self.run_cli(*self.greedy("--stop-token-id", "255", "--stop-token-id", str(stop_id), "And God said",
                                                tokens=40))
        self.assertEqual(out, full[:full.index(full[3])] + "\n")
        self.assertIn(f"stop_token_id={stop_id}", err)
        _, err, _ = self.run_cli(*self.greedy("--logprobs", "2", "And God said", tokens=3))
        self.assertEqual(err.count("[token] id="), 3)

    def test_session_create_generate_twice_get(self):
        sid, _, _ = self.run_cli("session", "create")
        sid = sid.strip()
        self.assertTrue(sid)
        one, _, _ = self.run_cli(*self.greedy("--session", sid, "And God said", tokens=10))
        two, err, _ = self.run_cli(*self.greedy("--session", sid, " and", tokens=10))
        self.assertIn("position=36", err)  # 12 + 10 + 4 + 10
        out, _, _ = self.run_cli("session", "get", sid)
        self.assertIn("position: 36", out)
        self.assertIn(f"model: {DEFAULT_MODEL}", out)
        got = json.loads(self.run_cli("session", "get", sid, "--json")[0])
        self.assertEqual(got["position"], 36)
        self.assertFalse(got["busy"])
        listed, _, _ = self.run_cli("session", "list")
        self.assertIn(sid, listed)
        # The same as one throw-away request holding everything.
        once, _, _ = self.run_cli(*self.greedy("And God said" + one.rstrip("\n") + " and", tokens=10))
        self.assertEqual(two, once)
        self.run_cli("session", "delete", sid)
        _, err, _ = self.run_cli("session", "get", sid, expect=15)
        self.assertIn("NOT_FOUND", err)

    def test_session_rewind_and_fork_at_a_position_regenerate_the_same_answer(self):
        sid = self.run_cli("session", "create", "--prefix", "And God said")[0].strip()
        answer, _, _ = self.run_cli(*self.greedy("--session", sid, tokens=10))
        got = json.loads(self.run_cli("session", "get", sid, "--json")[0])
        self.assertEqual(got["checkpoint_positions"], [11, 21])  # the state after each request
        fork = self.run_cli("session", "fork", sid, "--position", "12")[0].strip()
        _, err, _ = self.run_cli("session", "rewind", sid, "12")
        self.assertIn("position 12", err)
        for s in (sid, fork):
            again, _, _ = self.run_cli(*self.greedy("--session", s, tokens=10))
            self.assertEqual(again, answer)
        _, err, _ = self.run_cli("session", "rewind", sid, "999", expect=13)
        self.assertIn("INVALID_ARGUMENT", err)
        for s in (sid, fork):
            self.run_cli("session", "delete", s)

    def test_export_delete_import_continue_equals_never_exporting(self):
        ids = []
        for _ in range(2):
            sid = self.run_cli("session", "create", "--prefix", "In the beginning")[0].strip()
            self.run_cli(*self.greedy("--session", sid, " God", tokens=7))
            ids.append(sid)
        moved, stayed = ids
        path = os.path.join(self.tmp.name, "moved.state")
        _, err, _ = self.run_cli("session", "export", moved, path)
        self.assertIn("exported", err)
        self.assertGreater(os.path.getsize(path), 104448)  # the model's state bytes and a header
        self.assertFalse(os.path.exists(path + ".partial"))
        self.run_cli("session", "delete", moved)
        self.run_cli("session", "get", moved, expect=15)
        imported = self.run_cli("session", "import", path)[0].strip()
        self.assertNotEqual(imported, "")
        a = json.loads(self.run_cli("session", "get", imported, "--json")[0])
        b = json.loads(self.run_cli("session", "get", stayed, "--json")[0])
        self.assertEqual(a["position"], b["position"])
        # Continue from the pending token alone, then with new text: both equal the twin's.
        for args in ([], [" created"]):
            got = self.run_cli(*self.greedy("--session", imported, *args, tokens=15))[0]
            want = self.run_cli(*self.greedy("--session", stayed, *args, tokens=15))[0]
            self.assertEqual(got, want)
        # A fork continues as its parent does.
        fork = self.run_cli("session", "fork", stayed)[0].strip()
        self.assertEqual(self.run_cli(*self.greedy("--session", fork, tokens=10))[0],
                         self.run_cli(*self.greedy("--session", stayed, tokens=10))[0])
        # A damaged file is refused and creates nothing.
        with open(path, "rb") as f:
            blob = bytearray(f.read())
        blob[len(blob) // 2] ^= 1
        bad = os.path.join(self.tmp.name, "bad.state")
        with open(bad, "wb") as f:
            f.write(blob)
        before = self.run_cli("session", "list", "--json")[0]
        _, _, rc = self.run_cli("session", "import", bad, expect=None)
        self.assertIn(rc, (13, 19))
        self.assertEqual(self.run_cli("session", "list", "--json")[0], before)
        self.run_cli("session", "import", os.path.join(self.tmp.name, "missing"), expect=1)
        for s in (imported, stayed, fork):
            self.run_cli("session", "delete", s)

    def test_rpc_errors_exit_with_ten_plus_the_code_and_name_the_field(self):
        _, err, _ = self.run_cli("generate", "--top-p", "2", "x", expect=13)
        self.assertRegex(err, r"^retain: INVALID_ARGUMENT: .*top_p")
        _, err, _ = self.run_cli("generate", "--tokens", "1 300", expect=13)
        self.assertIn("prompt_tokens[1]", err)
        _, err, _ = self.run_cli("generate", "--model", "nope", "x", expect=15)
        self.assertIn("NOT_FOUND", err)
        _, err, _ = self.run_cli("generate", expect=13)  # no prompt, no session
        self.assertIn("prompt_text", err)
        _, err, _ = self.run_cli("--timeout", "0.2", "generate", "--max-tokens", "8000", "--ignore-eos", "x", expect=14)
        self.assertIn("DEADLINE_EXCEEDED", err)
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        _, err, _ = self.run_cli("--server", f"127.0.0.1:{free}", "--timeout", "10", "models", server=False, expect=24)
        self.assertIn("UNAVAILABLE", err)

    def test_tokenize_and_detokenize(self):
        out, _, _ = self.run_cli("tokenize", "And God")
        self.assertEqual(out, "65 110 100 32 71 111 100\n")
        out, _, _ = self.run_cli("detokenize", "65", "110 100", "32,71")
        self.assertEqual(out, "And G\n")

    def test_load_stream_mode(self):
        out, err, _ = self.run_cli("load", "--streams", "2", "--duration", "2", "--prompt-tokens", "8",
                                   "--max-tokens", "8", "--json")
        r = json.loads(out)
        self.assertEqual(r["mode"], "streams")
        self.assertGreater(r["generated_tokens"], 0)
        self.assertGreater(r["requests"], 0)
        self.assertGreater(r["tokens_per_second"], 0)
        self.assertEqual(r["errors"], {})
        self.assertEqual(r["prompt_tokens_processed"], 8 * r["requests"])
        # Every request ran to max_tokens (EOS ignored); those cut at the end gave some tokens too.
        self.assertGreaterEqual(r["generated_tokens"], 8 * r["requests"])
        # A first token for every finished request; a request cut at the end may have had none yet.
        self.assertGreaterEqual(r["ttft_seconds"]["count"], r["requests"])
        self.assertLessEqual(r["ttft_seconds"]["count"], r["requests"] + r["cancelled_at_end"])
        for k in ("ttft_seconds", "itl_seconds"):
            self.assertGreater(r[k]["p50"], 0)
            self.assertLessEqual(r[k]["p50"], r[k]["p90"])
            self.assertLessEqual(r[k]["p90"], r[k]["p99"])
        self.assertIn("[load]", err)  # the progress line
        # With a warm-up only requests started after it count, so the invariants above still hold.
        out, _, _ = self.run_cli("load", "--streams", "2", "--warmup", "1", "--duration", "2", "--prompt-tokens", "8",
                                 "--max-tokens", "8", "--json", "--quiet")
        w = json.loads(out)
        self.assertEqual(w["warmup_seconds"], 1)
        self.assertGreater(w["requests"], 0)
        self.assertLess(w["elapsed_seconds"], 2.9)  # the measured window, not warm-up + duration
        self.assertEqual(w["prompt_tokens_processed"], 8 * w["requests"])
        self.assertGreaterEqual(w["generated_tokens"], 8 * w["requests"])
        self.assertLessEqual(w["ttft_seconds"]["count"], w["requests"] + w["cancelled_at_end"])
        self.run_cli("load", "--conversations", "1", "--turns", "1", "--turn-tokens", "1", "--max-tokens", "1",
                     "--warmup", "1", expect=2)
        out, _, _ = self.run_cli("load", "--streams", "2", "--duration", "1", "--prompt-tokens", "4", "--max-tokens", "4",
                                 "--channels", "2")
        self.assertIn("tokens/s", out)
        self.assertIn("inter-token latency", out)

    def test_load_conversation_mode(self):
        turn_tokens, max_tokens = 5, 4
        out, _, _ = self.run_cli("load", "--conversations", "2", "--turns", "3", "--turn-tokens", str(turn_tokens),
                                 "--max-tokens", str(max_tokens), "--json")
        r = json.loads(out)
        self.assertEqual(r["mode"], "conversations")
        self.assertEqual(r["turns_completed"], 6)
        self.assertEqual(r["errors"], {})
        self.assertEqual([t["turn"] for t in r["per_turn"]], [1, 2, 3])
        for t in r["per_turn"]:
            self.assertEqual(t["completed"], 2)
            # usage.prompt_tokens counts the turn's new tokens only. From turn 2 on the server also
            # feeds the previous turn's last generated token first (the pending token), but that one
            # was already counted in the position when it was sent, so it is not counted again.
            self.assertEqual((t["prompt_tokens_min"], t["prompt_tokens_max"]), (turn_tokens, turn_tokens), t)
            self.assertEqual(t["position_p50"], t["turn"] * (turn_tokens + max_tokens))
            self.assertGreater(t["ttft_p50_seconds"], 0)
        # The sessions are deleted at the end.
        self.assertEqual(json.loads(self.run_cli("session", "list", "--json")[0]), [])
        out, _, _ = self.run_cli("load", "--conversations", "1", "--turns", "2", "--turn-tokens", "3", "--max-tokens", "2")
        self.assertRegex(out, r"(?m)^\s+2\s+1\s+.*\s3\s+10$")

    def test_load_refuses_a_remote_target(self):
        _, err, _ = self.run_cli("--server", "192.0.2.1:50051", "load", "--streams", "1", "--duration", "1",
                                 "--prompt-tokens", "1", "--max-tokens", "1", server=False, expect=2)
        self.assertIn("--allow-remote", err)


if __name__ == "__main__":
    unittest.main()
