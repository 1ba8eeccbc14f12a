'use strict';
const { RetainError } = require('./errors');

// One Generate stream. `for await (const piece of generation)` gives the text as it arrives
// (non-empty pieces; held-back text comes with the end). While and after: `started`, `tokens`
// ({id, text, logprob, topLogprobs}), `tokenIds`; at the end `finished` ({reason, usage, position,
// ...}). `text()` reads the rest and resolves to the whole text.
class Generation {
  // stopRequest(requestId): the Client's StopGeneration.
  constructor(call, stopRequest) {
    this._call = call;
    this._stopRequest = stopRequest;
    this._stopped = null; // the promise stop() returns
    this._stopWaiter = null; // its resolve/reject while the stop has not gone out
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
    } finally {
      // A stream that ended before `started` has nothing left to stop.
      this._stopWaiter?.resolve();
      this._stopWaiter = null;
    }
  }

  _take(response) {
    switch (response.event) {
      case 'started':
        this.started = response.started;
        if (this._stopWaiter) this._sendStop();
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

  // Ends the stream; the session keeps every token already sent, read or not.
  cancel() {
    this._call.cancel();
  }

  // Asks the server to end this generation (StopGeneration): the stream still delivers every token
  // sent and ends with `finished` (reason 'CANCELLED'), so the tokens read equal what the session
  // consumed. Before `started` has arrived the stop goes out when it does. Resolves once the server
  // took it (a generation that already finished: at once).
  stop() {
    if (!this._stopped) {
      this._stopped = new Promise((resolve, reject) => {
        this._stopWaiter = { resolve, reject };
      });
      if (this.started) this._sendStop();
    }
    return this._stopped;
  }

  _sendStop() {
    const waiter = this._stopWaiter;
    this._stopWaiter = null;
    this._stopRequest(this.started.requestId).then(waiter.resolve, (error) =>
      // NOT_FOUND: it finished meanwhile.
      (error.codeName === 'NOT_FOUND' ? waiter.resolve() : waiter.reject(error)));
  }
}

module.exports = { Generation };
