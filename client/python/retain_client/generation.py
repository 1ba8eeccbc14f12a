"""One Generate stream, read as text pieces."""
import grpc

from .errors import RetainError


class Generation:
    """Iterate for the text as it arrives (non-empty pieces; held-back text is released with the
    `finished` event). While and after iterating: `started`, `tokens` (retain.v1 Token messages),
    `token_ids`; after the end `finished` (Finished: reason, usage, position). `text()` reads the
    rest and returns the whole text."""

    def __init__(self, call, stop_request=None):
        self._call = call
        self._stop_request = stop_request  # StopGeneration(request_id), from the Client
        self._stop_wanted = False
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
                    if self._stop_wanted:
                        self._stop_now()
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
        """Ends the stream; the session keeps every token already sent, read or not."""
        self._call.cancel()

    def stop(self):
        """Asks the server to end this generation (StopGeneration): the stream still delivers every
        token sent and ends with `finished` (reason CANCELLED), so the tokens read equal what the
        session consumed. Called before `started` has arrived, the stop goes out when it does.
        Stopping a generation that already finished is a no-op."""
        if self.started is None:
            self._stop_wanted = True
        else:
            self._stop_now()

    def _stop_now(self):
        self._stop_wanted = False
        try:
            self._stop_request(self.started.request_id)
        except RetainError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: it finished meanwhile
                raise
