"""The one exception the client raises for a failed call."""
import grpc


class RetainError(Exception):
    """A call that ended with a gRPC status other than OK. `code` is a grpc.StatusCode and `details`
    the server's message, which names the offending field (e.g. "sampling.top_p must be in (0, 1]")."""

    def __init__(self, code, details):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, error):
        return cls(error.code(), error.details())


def translated(call, *args, **kwargs):
    """call(*args, **kwargs), with grpc.RpcError turned into RetainError."""
    try:
        return call(*args, **kwargs)
    except grpc.RpcError as e:
        raise RetainError.from_rpc(e) from None
