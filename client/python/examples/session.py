#!/usr/bin/env python3
"""A conversation kept on the server: create a session, generate on it, export it to a file,
import it back and continue both; the two continuations are the same text.

    client/python/examples/session.py "In the beginning"
"""
import os
import tempfile

from common import connect, parser


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("prefix")
    args = p.parse_args()
    with connect(args) as client:
        session = client.create_session(args.prefix)
        print(f"created {session.id} at position {session.position}")
        print("generated:", repr(session.generate(temperature=0, max_tokens=30).text()))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "session.state")
            session.export_to(path)
            copy = client.import_from(path)
            print(f"exported {os.path.getsize(path)} bytes, imported as {copy.id} at position {copy.position}")
        for s in (session, copy):
            print(f"{s.id[:8]} continues:", repr(s.generate(" And", temperature=0, max_tokens=30).text()))
        print("sessions:", " ".join(f"{s.id[:8]}@{s.position}" for s in client.list_sessions()))
        session.delete()
        copy.delete()


if __name__ == "__main__":
    main()
