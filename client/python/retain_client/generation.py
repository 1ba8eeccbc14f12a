"""One Generate stream, read as text pieces."""
import grpc

from .errors import RetainError


class Generation:
    """Iterate for the text as it arrives (non-empty pieces; held-back text is released with the
    `finished` event). While and after iterating: `started`, `tokens` (retain.v1 Token messages),
    `token_ids`; after the end `finished` (Finished: reason, usage, position). `text()` reads the
    rest and returns the whole text."""

    def __init__(self, call):
        self._call = call
        self._pieces = []
        self.started = None
        self.tokens = []
        self.finished = None

    def __iter__(self):
        try:
            for event in self._call:
                kind = event.WhichOneof("event")
                if kind == "started":
                    self.started = event.started
                elif kind == "token":
                    self.tokens.append(event.token)
                    if event.token.text:
                        self._pieces.append(event.token.text)
                        yield event.token.text
                elif kind == "finished":
                    self.finished = event.finished
                    if event.finished.text_tail:
                        self._pieces.append(event.finished.text_tail)
                        yield event.finished.text_tail
        except grpc.RpcError as e:
            raise RetainError.from_rpc(e) from None

    def text(self):
        for _ in self:
            pass
        return "".join(self._pieces)

    @property
    def token_ids(self):
        return [t.id for t in self.tokens]

    @property
    def reason(self):
        """The finish reason's name ("LENGTH", "STOP", "EOS", "CANCELLED"), None before the end."""
        if self.finished is None:
            return None
        return self.finished.Reason.Name(self.finished.reason)

    def cancel(self):
        """Ends the stream; the session keeps every token already sent."""
        self._call.cancel()
