"""client/python (retain_client) against a real retain-server on the shipped default model, held to
the C++ `retain` CLI on the same server: in plain text, and through TLS with a bearer token. Run by ctest (PythonClient): /usr/bin/python3 -m unittest
test_python_client, with PYTHONPATH = the generated stubs, client/python and this folder, and
$RETAIN_SERVER_BIN, $RETAIN_CLI_BIN, $RETAIN_SOURCE_DIR set (tests/CMakeLists.txt)."""
import hashlib
import io
import os
import secrets
import shutil
import subprocess
import tempfile
import unittest

import grpc

import retain_testing as rt
from certificates import make_certificates
from retain_client import Client, RetainError, Tls

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

    def test_stop_ends_a_generation_with_every_sent_token_delivered(self):
        _, want_ids = self.cli_greedy(PROMPT, 300)
        session = self.client.create_session()
        generation = session.generate(PROMPT, temperature=0, max_tokens=300)
        stopped = False
        for _ in generation:
            if len(generation.tokens) >= 3 and not stopped:
                generation.stop()  # more tokens may still come: those sent before the stop
                stopped = True
        self.assertEqual(generation.reason, "CANCELLED")
        got = generation.token_ids
        self.assertGreaterEqual(len(got), 3)
        self.assertLess(len(got), 300)
        self.assertEqual(got, want_ids[:len(got)])
        self.assertEqual(generation.finished.position, len(PROMPT) + len(got))
        self.assertEqual(session.refresh().position, len(PROMPT) + len(got))
        # The session holds exactly the tokens read: its continuation is the fresh greedy one.
        rest = session.generate(temperature=0, max_tokens=8)
        rest.text()
        fresh = self.client.generate(None, tokens=list(PROMPT.encode()) + got, temperature=0, max_tokens=8)
        fresh.text()
        self.assertEqual(rest.token_ids, fresh.token_ids)
        generation.stop()  # finished: a no-op
        early = session.generate(temperature=0, max_tokens=300)
        early.stop()  # before `started`: it goes out when `started` arrives
        early.text()
        self.assertEqual(early.reason, "CANCELLED")
        self.assertEqual(session.refresh().position, len(PROMPT) + len(got) + 8 + len(early.tokens))
        session.delete()

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

    def test_rewind_and_fork_at_a_position(self):
        s = self.client.create_session("In the beginning")
        first = s.generate(temperature=0, max_tokens=10).text()
        s.refresh()
        self.assertEqual(s.checkpoints, [len("In the beginning") - 1, s.position - 1])  # after each request
        self.assertEqual(s.history_start, 0)
        branch = s.fork(position=len("In the beginning"))
        self.assertEqual(branch.position, len("In the beginning"))
        self.assertIs(s.rewind(len("In the beginning")), s)
        self.assertEqual(s.position, len("In the beginning"))
        self.assertEqual(s.generate(temperature=0, max_tokens=10).text(), first)
        self.assertEqual(branch.generate(temperature=0, max_tokens=10).text(), first)
        with self.assertRaises(RetainError) as caught:
            self.client.rewind_session(s, 10_000)
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        s.delete()
        branch.delete()

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


class SecurePythonClientTest(unittest.TestCase):
    """The client through TLS with a bearer token (a server with --tls-cert/--tls-key and
    --auth-tokens, tenants alice and bob), and with a client certificate (a second server that also
    has --tls-client-ca). The certificates are made now by openssl."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.tmp.cleanup)
        cls.certs = make_certificates(cls.tmp.name)
        cls.token, cls.other_token = secrets.token_hex(16), secrets.token_hex(16)
        tokens = os.path.join(cls.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write(f"alice {cls.token}\nbob sha256:{hashlib.sha256(cls.other_token.encode()).hexdigest()}\n")
        tls = ["--tls-cert", cls.certs["server.pem"], "--tls-key", cls.certs["server.key"]]
        cls.server = rt.ServerProcess(["--threads", "1", *tls, "--auth-tokens", tokens])
        cls.addClassCleanup(cls.server.stop_and_check)
        cls.mtls_server = rt.ServerProcess(["--threads", "1", *tls, "--tls-client-ca", cls.certs["ca.pem"]])
        cls.addClassCleanup(cls.mtls_server.stop_and_check)
        cls.tls = Tls(ca=cls.certs["ca.pem"])
        cls.client = Client(cls.server.address, token=cls.token, tls=cls.tls, timeout=60)
        cls.addClassCleanup(cls.client.close)

    def refused(self, client, code):
        with client, self.assertRaises(RetainError) as caught:
            client.models()
        self.assertEqual(caught.exception.code, code, caught.exception)

    def test_a_greedy_generation_through_tls_with_a_token_is_the_clis(self):
        want_text, want_ids = cli_greedy(self.server.address, PROMPT, 30, "--tls-ca", self.certs["ca.pem"],
                                         "--token", self.token)
        generation = self.client.generate(PROMPT, temperature=0, max_tokens=30)
        self.assertEqual(generation.text() + "\n", want_text)
        self.assertEqual(generation.token_ids, want_ids)

    def test_a_session_through_tls_with_a_token_moves_through_a_file(self):
        original = self.client.create_session("In the beginning")
        original.generate(" God", temperature=0, max_tokens=10).text()
        path = os.path.join(self.tmp.name, "secure.state")
        original.export_to(path)
        copy = self.client.import_from(path)
        self.assertEqual(copy.position, original.refresh().position)
        self.assertEqual(copy.generate(" and", temperature=0, max_tokens=15).text(),
                         original.generate(" and", temperature=0, max_tokens=15).text())
        # The other tenant sees neither.
        with Client(self.server.address, token=self.other_token, tls=self.tls, timeout=60) as bob:
            self.assertEqual([s.id for s in bob.list_sessions()], [])
            with self.assertRaises(RetainError) as caught:
                bob.get_session(copy.id)
            self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        original.delete()
        copy.delete()

    def test_a_wrong_or_missing_token_is_unauthenticated(self):
        self.refused(Client(self.server.address, token="not-" + self.token, tls=self.tls, timeout=60),
                     grpc.StatusCode.UNAUTHENTICATED)
        self.refused(Client(self.server.address, tls=self.tls, timeout=60), grpc.StatusCode.UNAUTHENTICATED)
        with Client(self.server.address, token="wrong", tls=self.tls, timeout=60) as wrong:
            with self.assertRaises(RetainError) as caught:
                wrong.generate(PROMPT, max_tokens=5).text()
            self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED)

    def test_plain_text_to_a_tls_server_fails(self):
        self.refused(Client(self.server.address, token=self.token, timeout=10), grpc.StatusCode.UNAVAILABLE)

    def test_a_client_certificate_is_sent_and_needed_with_mtls(self):
        mtls = Tls(ca=self.certs["ca.pem"], cert=self.certs["client.pem"], key=self.certs["client.key"])
        want_text, _ = cli_greedy(self.mtls_server.address, PROMPT, 20, "--tls-ca", self.certs["ca.pem"],
                                  "--tls-cert", self.certs["client.pem"], "--tls-key", self.certs["client.key"])
        with Client(self.mtls_server.address, tls=mtls, timeout=60) as client:
            self.assertEqual(client.generate(PROMPT, temperature=0, max_tokens=20).text() + "\n", want_text)
        self.refused(Client(self.mtls_server.address, tls=self.tls, timeout=10), grpc.StatusCode.UNAVAILABLE)


if __name__ == "__main__":
    unittest.main()
