"""Certificates for the TLS tests, made at test time with the openssl CLI (never committed).

EC P-256 keys: generated in milliseconds, where RSA takes a noticeable while on a busy machine."""
import os
import subprocess

_NEW_KEY = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out"]


def _openssl(*argv):
    p = subprocess.run(argv, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.decode(errors='replace')}")


def _signed(directory, name, common_name, extensions):
    base = os.path.join(directory, name)
    _openssl(*_NEW_KEY, base + ".key")
    with open(base + ".ext", "w") as f:
        f.write(extensions)
    _openssl("openssl", "req", "-new", "-key", base + ".key", "-out", base + ".csr", "-subj", f"/CN={common_name}")
    ca = os.path.join(directory, "ca")
    _openssl("openssl", "x509", "-req", "-in", base + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", base + ".pem", "-days", "2", "-extfile", base + ".ext")


def make_certificates(directory):
    """In `directory`: ca.pem (a CA), server.pem/server.key (signed by it, for 127.0.0.1 and
    localhost) and client.pem/client.key (signed by it, for client authentication). Returns
    {name: path} for those five."""
    ca = os.path.join(directory, "ca")
    _openssl(*_NEW_KEY, ca + ".key")
    _openssl("openssl", "req", "-x509", "-new", "-key", ca + ".key", "-out", ca + ".pem", "-days", "2",
             "-subj", "/CN=retain-test-ca")
    _signed(directory, "server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed(directory, "client", "retain-test-client", "extendedKeyUsage=clientAuth\n")
    names = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    return {n: os.path.join(directory, n) for n in names}
