"""A handle on a session that lives on the server."""


class Session:
    """`id`, `model`, `position` (tokens consumed), `state_bytes`, `busy`, `created` and
    `last_used` (Unix seconds), `checkpoints` (positions whose state the server keeps) and
    `history_start` as the server last reported them: `refresh()` asks again (a generation moves
    `position`)."""

    def __init__(self, client, info):
        self._client = client
        self._update(info)

    def _update(self, info):
        self.id = info.id
        self.model = info.model
        self.position = info.position
        self.state_bytes = info.state_bytes
        self.busy = info.busy
        self.created = info.created_unix_seconds
        self.last_used = info.last_used_unix_seconds
        self.checkpoints = list(info.checkpoint_positions)
        self.history_start = info.history_start

    def generate(self, prompt=None, **kwargs):
        """Client.generate on this session; with no prompt it continues from the pending token."""
        return self._client.generate(prompt, session=self.id, **kwargs)

    def fork(self, position=None):
        return self._client.fork_session(self.id, position)

    def rewind(self, position):
        """Back to the first `position` tokens (regenerate, edit an earlier turn)."""
        self._update(self._client._rewind(self.id, position))
        return self

    def export_to(self, file):
        self._client.export_session(self.id, file)

    def refresh(self):
        self._update(self._client._session_info(self.id))
        return self

    def delete(self):
        self._client.delete_session(self.id)

    def __repr__(self):
        return f"Session(id={self.id!r}, model={self.model!r}, position={self.position})"
