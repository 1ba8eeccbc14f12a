'use strict';
const { RetainError } = require('./errors');

// One Generate stream. `for await (const piece of generation)` gives the text as it arrives
// (non-empty pieces; held-back text comes with the end). While and after: `started`, `tokens`
// ({id, text, logprob, topLogprobs}), `tokenIds`; at the end `finished` ({reason, usage, position,
// ...}). `text()` reads the rest and resolves to the whole text.
class Generation {
  constructor(call) {
    this._call = call;
    this._pieces = [];
    this.started = null;
    this.tokens = [];
    this.finished = null;
  }

  async *[Symbol.asyncIterator]() {
    try {
      for await (const response of this._call) {
        const piece = this._take(response);
        if (piece) {
          this._pieces.push(piece);
          yield piece;
        }
      }
    } catch (error) {
      throw RetainError.from(error);
    }
  }

  _take(response) {
    switch (response.event) {
      case 'started':
        this.started = response.started;
        return '';
      case 'token':
        this.tokens.push(response.token);
        return response.token.text;
      case 'finished':
        this.finished = response.finished;
        return response.finished.textTail;
      default:
        return '';
    }
  }

  async text() {
    // eslint-disable-next-line no-unused-vars
    for await (const _piece of this);
    return this._pieces.join('');
  }

  get tokenIds() {
    return this.tokens.map((t) => t.id);
  }

  // 'LENGTH', 'STOP', 'EOS' or 'CANCELLED'; null before the end.
  get reason() {
    return this.finished ? this.finished.reason : null;
  }

  // Ends the stream; the session keeps every token already sent.
  cancel() {
    this._call.cancel();
  }
}

module.exports = { Generation };
