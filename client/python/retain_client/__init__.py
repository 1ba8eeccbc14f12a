"""retain_client: the Python client of retain-server (retain.v1 over gRPC).

    from retain_client import Client
    with Client("127.0.0.1:50051") as client:
        for piece in client.generate("And God said", temperature=0, max_tokens=40):
            print(piece, end="", flush=True)
"""
from .client import Client, Tls
from .errors import RetainError
from .generation import Generation
from .session import Session

__all__ = ["Client", "Tls", "RetainError", "Generation", "Session"]
