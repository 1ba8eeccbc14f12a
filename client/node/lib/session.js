'use strict';

// A handle on a session that lives on the server: `id`, `model`, `position` (tokens consumed),
// `stateBytes`, `busy`, `created` and `lastUsed` (Unix seconds), `checkpoints` and `historyStart` as
// last reported; `refresh()` asks again (a generation moves `position`).
class Session {
  constructor(client, info) {
    this._client = client;
    this._update(info);
  }

  _update(info) {
    this.id = info.id;
    this.model = info.model;
    this.position = info.position;
    this.stateBytes = info.stateBytes;
    this.busy = info.busy;
    this.created = info.createdUnixSeconds;
    this.lastUsed = info.lastUsedUnixSeconds;
    this.checkpoints = info.checkpointPositions || [];
    this.historyStart = info.historyStart;
  }

  // client.generate on this session; with no prompt it continues from the pending token.
  generate(prompt, options = {}) {
    return this._client.generate(prompt, { ...options, session: this.id });
  }

  fork(position) {
    return this._client.forkSession(this.id, position);
  }

  // Back to the first `position` tokens (regenerate, edit an earlier turn).
  async rewind(position) {
    this._update(await this._client._unary('RewindSession', { sessionId: this.id, position }));
    return this;
  }

  exportTo(file) {
    return this._client.exportSession(this.id, file);
  }

  async refresh() {
    this._update(await this._client._sessionInfo(this.id));
    return this;
  }

  delete() {
    return this._client.deleteSession(this.id);
  }
}

module.exports = { Session };
