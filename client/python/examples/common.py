"""The connection flags both examples take."""
import argparse
import os

from retain_client import Client, Tls


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--server", default=os.environ.get("RETAIN_SERVER", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("RETAIN_TOKEN"), help="bearer token (or $RETAIN_TOKEN)")
    p.add_argument("--tls-ca", help="CA certificate (PEM) of the server: connect with TLS")
    p.add_argument("--tls-cert", help="client certificate (PEM), for mTLS")
    p.add_argument("--tls-key", help="client key (PEM), for mTLS")
    return p


def connect(args):
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = Tls(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    return Client(args.server, token=args.token, tls=tls, timeout=60)
