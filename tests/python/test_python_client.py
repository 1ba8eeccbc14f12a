"""client/python (retain_client) against a real retain-server on the shipped default model, held to
the C++ `retain` CLI on the same server. Run by ctest (PythonClient): /usr/bin/python3 -m unittest
test_python_client, with PYTHONPATH = the generated stubs, client/python and this folder, and
$RETAIN_SERVER_BIN, $RETAIN_CLI_BIN, $RETAIN_SOURCE_DIR set (tests/CMakeLists.txt)."""
import io
import os
import shutil
import subprocess
import tempfile
import unittest

import grpc

import retain_testing as rt
from retain_client import Client, RetainError

PROMPT = "And God said"


def cli_greedy(address, prompt, max_tokens, *global_options):
    """The C++ CLI's text (stdout) and token ids (its --logprobs lines) for a greedy request."""
    p = subprocess.run([rt.env_path("RETAIN_CLI_BIN"), "--server", address, *global_options, "generate",
                        "--temperature", "0", "--max-tokens", str(max_tokens), "--logprobs", "1", prompt],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"retain generate exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    ids = [int(line.split("id=")[1].split()[0]) for line in p.stderr.decode().splitlines()
           if line.startswith("[token] id=")]
    return p.stdout.decode(), ids


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = rt.ServerProcess(["--threads", "1"])
        cls.client = Client(cls.server.address, timeout=60)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.tmp.cleanup()
        cls.server.stop_and_check()

    def cli_greedy(self, prompt, max_tokens):
        return cli_greedy(self.server.address, prompt, max_tokens)

    def test_a_greedy_generation_streams_what_the_cli_gets(self):
        want_text, want_ids = self.cli_greedy(PROMPT, 40)
        generation = self.client.generate(PROMPT, temperature=0, max_tokens=40)
        pieces = list(generation)
        self.assertGreater(len(pieces), 1)  # streamed, not one blob
        self.assertTrue(all(isinstance(p, str) and p for p in pieces))
        self.assertEqual("".join(pieces) + "\n", want_text)
        self.assertEqual(generation.token_ids, want_ids)
        self.assertEqual(len(want_ids), 40)
        self.assertEqual(generation.reason, "LENGTH")
        self.assertEqual(generation.finished.position, len(PROMPT) + 40)  # a byte-level model
        self.assertEqual(generation.finished.usage.prompt_tokens, len(PROMPT))
        self.assertEqual(generation.started.prompt_tokens, len(PROMPT))

    def test_prompt_ids_stop_strings_and_tokenize(self):
        ids = self.client.tokenize(PROMPT)
        self.assertEqual(ids, list(PROMPT.encode()))
        self.assertEqual(self.client.detokenize(ids), PROMPT)
        by_text = self.client.generate(PROMPT, temperature=0, max_tokens=30).text()
        by_ids = self.client.generate(tokens=ids, temperature=0, max_tokens=30)
        self.assertEqual(by_ids.text(), by_text)
        stop = by_text[10:14]
        stopped = self.client.generate(PROMPT, temperature=0, max_tokens=30, stop=[stop])
        self.assertEqual(stopped.text(), by_text[:by_text.index(stop)])
        self.assertEqual((stopped.reason, stopped.finished.stop), ("STOP", stop))

    def test_create_generate_export_import_continue_equals_the_original(self):
        original = self.client.create_session("In the beginning")
        self.assertEqual(original.position, len("In the beginning"))
        first = original.generate(" God", temperature=0, max_tokens=12).text()
        self.assertTrue(first)
        path = os.path.join(self.tmp.name, "original.state")
        original.export_to(path)
        self.assertFalse(os.path.exists(path + ".partial"))
        copy = self.client.import_from(path)
        self.assertNotEqual(copy.id, original.id)
        self.assertEqual(copy.position, original.refresh().position)
        self.assertEqual(copy.position, len("In the beginning God") + 12)
        # From the pending token alone, then with new text: the copy continues as the original does.
        for prompt in (None, " and the earth"):
            want = original.generate(prompt, temperature=0, max_tokens=15)
            got = copy.generate(prompt, temperature=0, max_tokens=15)
            self.assertEqual(got.text(), want.text())
            self.assertEqual(got.token_ids, want.token_ids)
            self.assertEqual(got.finished.position, want.finished.position)
        # A file object works as well as a path, both ways.
        buffer = io.BytesIO()
        copy.export_to(buffer)
        self.assertEqual(len(buffer.getvalue()), os.path.getsize(path))
        buffer.seek(0)
        again = self.client.import_from(buffer)
        self.assertEqual(again.generate(temperature=0, max_tokens=8).text(),
                         copy.generate(temperature=0, max_tokens=8).text())
        # Damaged bytes are refused and create nothing; a failed export leaves no file.
        blob = bytearray(buffer.getvalue())
        blob[len(blob) // 2] ^= 1
        count = len(self.client.list_sessions())
        with self.assertRaises(RetainError) as caught:
            self.client.import_from(io.BytesIO(bytes(blob)))
        self.assertIn(caught.exception.code, (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION))
        self.assertEqual(len(self.client.list_sessions()), count)
        for s in (original, copy, again):
            s.delete()
        gone = os.path.join(self.tmp.name, "gone.state")
        with self.assertRaises(RetainError) as caught:
            original.export_to(gone)
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertFalse(os.path.exists(gone) or os.path.exists(gone + ".partial"))

    def test_list_get_fork_delete(self):
        parent = self.client.create_session("Amen.")
        fork = parent.fork()
        self.assertEqual(fork.position, parent.position)
        listed = {s.id: s for s in self.client.list_sessions()}
        self.assertIn(parent.id, listed)
        self.assertIn(fork.id, listed)
        self.assertEqual(listed[parent.id].model, "rwkv7-kjv-byte")
        self.assertEqual(self.client.get_session(parent.id).position, len("Amen."))
        self.assertEqual(fork.generate(temperature=0, max_tokens=10).text(),
                         parent.generate(temperature=0, max_tokens=10).text())
        parent.delete()
        with self.assertRaises(RetainError) as caught:
            self.client.get_session(parent.id)
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.client.delete_session(fork)
        self.assertNotIn(fork.id, {s.id for s in self.client.list_sessions()})

    def test_a_refused_request_raises_retain_error_naming_the_field(self):
        with self.assertRaises(RetainError) as caught:
            self.client.generate(PROMPT, top_p=2.0).text()
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("top_p", caught.exception.details)
        with self.assertRaises(TypeError):
            self.client.generate(PROMPT, temprature=0)

    def test_the_package_installs_and_its_example_streams_the_same_text(self):
        # pip builds the wheel (generating the stubs from proto/) in a copy of the checkout's two
        # folders, so nothing is written into the source tree; the venv sees only Debian's grpcio
        # and protobuf and the installed package, never this folder or the build tree's stubs.
        source = rt.env_path("RETAIN_SOURCE_DIR")
        root = os.path.join(self.tmp.name, "checkout")
        shutil.copytree(os.path.join(source, "client", "python"), os.path.join(root, "client", "python"))
        shutil.copytree(os.path.join(source, "proto"), os.path.join(root, "proto"))
        venv = os.path.join(self.tmp.name, "venv")
        run = lambda *argv, **kw: subprocess.run(argv, capture_output=True, timeout=180, **kw)
        p = run("/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", venv)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        python = os.path.join(venv, "bin", "python3")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        p = run("/usr/bin/python3", "-m", "pip", "--python", python, "install", "--no-index", "--no-build-isolation",
                os.path.join(root, "client", "python"), env=env)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        want_text, _ = self.cli_greedy(PROMPT, 30)
        example = os.path.join(root, "client", "python", "examples", "generate.py")
        p = run(python, "-s", example, "--server", self.server.address, "--temperature", "0", "--max-tokens", "30",
                PROMPT, env=env, cwd=self.tmp.name)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout.decode(), want_text)
        self.assertIn("reason=LENGTH", p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
