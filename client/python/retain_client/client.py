"""Client: a channel to retain-server and the retain.v1 calls as Python methods."""
import os
from dataclasses import dataclass
from typing import Optional

import grpc

from retain.v1 import retain_pb2 as pb
from retain.v1 import retain_pb2_grpc as pbg

from .errors import translated
from .generation import Generation
from .session import Session

# The server refuses import chunks over 1 MiB.
CHUNK_BYTES = 1 << 20

_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
             "repetition_penalty", "penalty_decay", "seed")


@dataclass(frozen=True)
class Tls:
    """TLS to the server. `ca`: PEM file of the CA that signed the server's certificate (None: the
    system's roots). `cert` and `key`: this client's certificate and key, for a server that requires
    them (mTLS). `server_name`: the name to check the certificate against, when it differs from the
    target's host."""
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    server_name: Optional[str] = None


def _read(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _channel(target, tls):
    if tls is None or tls is False:
        return grpc.insecure_channel(target)
    if tls is True:
        tls = Tls()
    elif isinstance(tls, (str, os.PathLike)):
        tls = Tls(ca=os.fspath(tls))
    if (tls.cert is None) != (tls.key is None):
        raise ValueError("Tls: cert and key go together")
    credentials = grpc.ssl_channel_credentials(_read(tls.ca), _read(tls.key), _read(tls.cert))
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, credentials, options)


def _id(session):
    return session.id if isinstance(session, Session) else (session or "")


class Client:
    """Client("127.0.0.1:50051", token=None, tls=None, timeout=None).

    token: sent as `authorization: Bearer TOKEN` on every call (a server started with --auth-tokens
    requires it). tls: None (plain text), True (system roots), a CA file path, or Tls(...).
    timeout: each call's deadline in seconds (None: none). A failed call raises RetainError."""

    def __init__(self, target="127.0.0.1:50051", token=None, tls=None, timeout=None):
        self._channel = _channel(target, tls)
        self._stub = pbg.RetainStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        return translated(method, request, timeout=self.timeout, metadata=self._metadata)

    def generate(self, prompt=None, *, tokens=None, session=None, model="", max_tokens=None, stop=(),
                 stop_token_ids=(), ignore_eos=False, logprobs=0, **sampling):
        """A Generation: iterate it for text pieces. prompt (text) or tokens (ids), at most one;
        neither only with a session. Sampling keywords: temperature (0 = greedy; the server's
        default is 1), top_p, top_k, min_p, presence_penalty, frequency_penalty,
        repetition_penalty, penalty_decay, seed; only those given are sent."""
        unknown = set(sampling) - set(_SAMPLING)
        if unknown:
            raise TypeError(f"generate() got unknown keyword(s): {', '.join(sorted(unknown))}")
        request = pb.GenerateRequest(model=model, session_id=_id(session), logprobs=logprobs)
        if prompt is not None:
            request.prompt_text = prompt
        if tokens is not None:
            request.prompt_tokens.extend(tokens)
        for name, value in sampling.items():
            if value is not None:
                setattr(request.sampling, name, value)
        if max_tokens is not None:
            request.stopping.max_tokens = max_tokens
        request.stopping.stop.extend(stop)
        request.stopping.stop_token_ids.extend(stop_token_ids)
        request.stopping.ignore_eos = ignore_eos
        return Generation(self._stub.Generate(request, timeout=self.timeout, metadata=self._metadata),
                          self.stop_generation)

    def stop_generation(self, request_id):
        """Ends a running generation by the request id of its `started` (Generation.stop does this)."""
        self._call(self._stub.StopGeneration, pb.StopGenerationRequest(request_id=request_id))

    def create_session(self, prefix=None, *, prefix_tokens=None, model=""):
        """A new Session, its state prefilled with the prefix (text or ids) when one is given."""
        request = pb.CreateSessionRequest(model=model)
        if prefix is not None:
            request.prefix_text = prefix
        if prefix_tokens is not None:
            request.prefix_tokens.extend(prefix_tokens)
        return Session(self, self._call(self._stub.CreateSession, request))

    def _session_info(self, session_id):
        return self._call(self._stub.GetSession, pb.GetSessionRequest(session_id=session_id))

    def get_session(self, session_id):
        return Session(self, self._session_info(session_id))

    def list_sessions(self, model=""):
        response = self._call(self._stub.ListSessions, pb.ListSessionsRequest(model=model))
        return [Session(self, s) for s in response.sessions]

    def delete_session(self, session):
        self._call(self._stub.DeleteSession, pb.DeleteSessionRequest(session_id=_id(session)))

    def fork_session(self, session, position=None):
        """A new Session whose state is a copy of this one's, or of this one as it was after its
        first `position` tokens."""
        request = pb.ForkSessionRequest(session_id=_id(session))
        if position is not None:
            request.position = position
        return Session(self, self._call(self._stub.ForkSession, request))

    def rewind_session(self, session, position):
        """Takes the session back to having consumed its first `position` tokens; its new info."""
        return Session(self, self._rewind(session, position))

    def _rewind(self, session, position):
        request = pb.RewindSessionRequest(session_id=_id(session), position=position)
        return self._call(self._stub.RewindSession, request)

    def export_session(self, session, file):
        """Writes the session's snapshot to `file`: a path (written as PATH.partial, renamed to PATH
        once the whole stream arrived, so a failed export leaves no PATH) or a binary file object."""
        request = pb.ExportSessionRequest(session_id=_id(session))
        if not isinstance(file, (str, os.PathLike)):
            self._export(request, file)
            return
        partial = os.fspath(file) + ".partial"
        try:
            with open(partial, "wb") as out:
                self._export(request, out)
            os.replace(partial, file)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    def _export(self, request, out):
        def write_all():
            for chunk in self._stub.ExportSession(request, timeout=self.timeout, metadata=self._metadata):
                out.write(chunk.data)
        translated(write_all)

    def import_from(self, file):
        """A new Session from a snapshot written by export_to: a path or a binary file object. The
        server checks the snapshot and refuses damaged or foreign bytes, creating nothing."""
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as f:
                return self.import_from(f)

        def chunks():
            while True:
                data = file.read(CHUNK_BYTES)
                if not data:
                    return
                yield pb.SessionChunk(data=data)

        return Session(self, self._call(self._stub.ImportSession, chunks()))

    def models(self):
        """The served models (retain.v1 Model messages), the default one with is_default set."""
        return list(self._call(self._stub.ListModels, pb.ListModelsRequest()).models)

    def tokenize(self, text, model=""):
        return list(self._call(self._stub.Tokenize, pb.TokenizeRequest(model=model, text=text)).ids)

    def detokenize(self, ids, model=""):
        return self._call(self._stub.Detokenize, pb.DetokenizeRequest(model=model, ids=ids)).text
