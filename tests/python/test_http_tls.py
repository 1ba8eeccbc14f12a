"""The HTTP API over TLS: with --tls-cert/--tls-key the HTTP port serves HTTPS with the gRPC port's
certificate (and, with --tls-client-ca, asks for client certificates as gRPC does). Certificates are
made by the openssl CLI at test time (certificates.py); the client is Python's ssl (OpenSSL).

Run by ctest (HttpTls) with /usr/bin/python3; PYTHONPATH = the generated stubs and this folder.
"""
import http.client
import json
import os
import ssl
import tempfile
import unittest

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

import retain_testing as rt
from certificates import make_certificates

TIMEOUT = 60.0
PROMPT = "In the beginning God"


def https(port, context, method, path, body=None):
    """(status, parsed JSON) of one request over HTTPS."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=context)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
        res = conn.getresponse()
        return res.status, json.loads(res.read().decode())
    finally:
        conn.close()


class HttpTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.tmp.cleanup)
        cls.certs = make_certificates(cls.tmp.name)
        kjv = os.path.join(rt.env_path("RETAIN_SOURCE_DIR"), "models", "rwkv7-kjv-byte")
        tls = ["--tls-cert", cls.certs["server.pem"], "--tls-key", cls.certs["server.key"]]
        common = ["--model", f"kjv={kjv}", "--threads", "1", "--http-listen", "127.0.0.1:0", *tls]
        cls.server = rt.ServerProcess(common)
        cls.addClassCleanup(cls.server.stop_and_check)
        cls.mtls = rt.ServerProcess([*common, "--tls-client-ca", cls.certs["ca.pem"]])
        cls.addClassCleanup(cls.mtls.stop_and_check)
        cls.trusting = ssl.create_default_context(cafile=cls.certs["ca.pem"])

    def grpc_greedy(self, max_tokens):
        with open(self.certs["ca.pem"], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(self.server.address, creds) as channel:
            req = pb.GenerateRequest(prompt_text=PROMPT)
            req.sampling.temperature = 0.0
            req.stopping.max_tokens = max_tokens
            text = ""
            for r in pbg.RetainStub(channel).Generate(req, timeout=TIMEOUT):
                if r.WhichOneof("event") == "token":
                    text += r.token.text
                elif r.WhichOneof("event") == "finished":
                    text += r.finished.text_tail
            return text

    def test_https_serves_the_api_with_the_grpc_certificate(self):
        self.assertIn(f"http on https://127.0.0.1:{self.server.http_port}", self.server.log())
        self.assertEqual(https(self.server.http_port, self.trusting, "GET", "/health"), (200, {"status": "ok"}))
        status, body = https(self.server.http_port, self.trusting, "POST", "/v1/completions",
                             {"prompt": PROMPT, "max_tokens": 16, "temperature": 0})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["choices"][0]["text"], self.grpc_greedy(16))

    def test_plain_http_and_untrusted_clients_are_refused(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=TIMEOUT)
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("GET", "/health")
            conn.getresponse().read()
        conn.close()
        with self.assertRaises(ssl.SSLCertVerificationError):
            https(self.server.http_port, ssl.create_default_context(), "GET", "/health")  # no CA: not trusted

    def test_client_certificates_when_the_server_asks_for_them(self):
        with self.assertRaises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            https(self.mtls.http_port, self.trusting, "GET", "/health")
        with_cert = ssl.create_default_context(cafile=self.certs["ca.pem"])
        with_cert.load_cert_chain(self.certs["client.pem"], self.certs["client.key"])
        self.assertEqual(https(self.mtls.http_port, with_cert, "GET", "/health"), (200, {"status": "ok"}))


if __name__ == "__main__":
    unittest.main()
