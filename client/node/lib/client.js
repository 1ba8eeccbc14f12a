'use strict';
const { once } = require('node:events');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const { retainV1 } = require('./proto');
const { RetainError } = require('./errors');
const { Generation } = require('./generation');
const { Session } = require('./session');

// The server refuses import chunks over 1 MiB.
const CHUNK_BYTES = 1 << 20;

const SAMPLING = ['temperature', 'topP', 'topK', 'minP', 'presencePenalty', 'frequencyPenalty',
  'repetitionPenalty', 'penaltyDecay', 'seed'];

function credentials(tls) {
  if (!tls) return [grpc.credentials.createInsecure(), {}];
  const options = typeof tls === 'string' ? { ca: tls } : tls === true ? {} : tls;
  if (!options.cert !== !options.key) throw new TypeError('tls: cert and key go together');
  const read = (file) => (file ? fs.readFileSync(file) : null);
  const channelOptions = options.serverName ? { 'grpc.ssl_target_name_override': options.serverName } : {};
  return [grpc.credentials.createSsl(read(options.ca), read(options.key), read(options.cert)), channelOptions];
}

const idOf = (session) => (session instanceof Session ? session.id : session || '');

// new Client('127.0.0.1:50051', { token, tls, timeout })
//   token:   sent as `authorization: Bearer TOKEN` on every call (needed by a server started with
//            --auth-tokens).
//   tls:     absent (plain text), true (system roots), a CA file path, or { ca, cert, key,
//            serverName } (cert and key: this client's, for mTLS).
//   timeout: each call's deadline in seconds (absent: none).
// A failed call rejects (or, for a generation, throws while iterating) with a RetainError.
class Client {
  constructor(target = '127.0.0.1:50051', { token, tls, timeout } = {}) {
    const [creds, channelOptions] = credentials(tls);
    this._stub = new (retainV1().Retain)(target, creds, channelOptions);
    this._token = token;
    this.timeout = timeout;
  }

  close() {
    this._stub.close();
  }

  _metadata() {
    const metadata = new grpc.Metadata();
    if (this._token) metadata.set('authorization', `Bearer ${this._token}`);
    return metadata;
  }

  _options() {
    return this.timeout ? { deadline: Date.now() + this.timeout * 1000 } : {};
  }

  _unary(method, request) {
    return new Promise((resolve, reject) => {
      this._stub[method](request, this._metadata(), this._options(),
        (error, response) => (error ? reject(RetainError.from(error)) : resolve(response)));
    });
  }

  // A Generation: `for await` it for text pieces. prompt: text (or null; options.tokens gives ids
  // instead; neither only with options.session). Options: session, model, tokens, maxTokens, stop,
  // stopTokenIds, ignoreEos, logprobs, and the sampling parameters temperature (0 = greedy; the
  // server's default is 1), topP, topK, minP, presencePenalty, frequencyPenalty,
  // repetitionPenalty, penaltyDecay, seed; only those given are sent.
  generate(prompt, options = {}) {
    const { session, model = '', tokens, maxTokens, stop = [], stopTokenIds = [], ignoreEos = false,
      logprobs = 0, ...sampling } = options;
    const unknown = Object.keys(sampling).filter((k) => !SAMPLING.includes(k));
    if (unknown.length) throw new TypeError(`generate: unknown option(s) ${unknown.join(', ')}`);
    const request = {
      model, sessionId: idOf(session), logprobs,
      sampling: Object.fromEntries(Object.entries(sampling).filter(([, v]) => v !== undefined && v !== null)),
      stopping: { stop, stopTokenIds, ignoreEos },
    };
    if (prompt !== undefined && prompt !== null) request.promptText = prompt;
    if (tokens) request.promptTokens = tokens;
    if (maxTokens !== undefined) request.stopping.maxTokens = maxTokens;
    return new Generation(this._stub.Generate(request, this._metadata(), this._options()),
      (requestId) => this.stopGeneration(requestId));
  }

  // Ends a running generation by the request id of its `started` (Generation.stop does this).
  async stopGeneration(requestId) {
    await this._unary('StopGeneration', { requestId });
  }

  // A new Session, prefilled with `prefix` (text) or options.prefixTokens (ids) when given.
  async createSession(prefix, { prefixTokens, model = '' } = {}) {
    const request = { model };
    if (prefix !== undefined && prefix !== null) request.prefixText = prefix;
    if (prefixTokens) request.prefixTokens = prefixTokens;
    return new Session(this, await this._unary('CreateSession', request));
  }

  _sessionInfo(sessionId) {
    return this._unary('GetSession', { sessionId });
  }

  async getSession(sessionId) {
    return new Session(this, await this._sessionInfo(sessionId));
  }

  async listSessions(model = '') {
    const response = await this._unary('ListSessions', { model });
    return response.sessions.map((info) => new Session(this, info));
  }

  async deleteSession(session) {
    await this._unary('DeleteSession', { sessionId: idOf(session) });
  }

  // A new Session whose state is a copy of this one's.
  // A copy of the session, or (with `position`) of the session as it was after its first
  // `position` tokens.
  async forkSession(session, position) {
    const request = { sessionId: idOf(session) };
    if (position !== undefined) request.position = position;
    return new Session(this, await this._unary('ForkSession', request));
  }

  // Takes the session back to having consumed its first `position` tokens.
  async rewindSession(session, position) {
    return new Session(this, await this._unary('RewindSession', { sessionId: idOf(session), position }));
  }

  // Writes the session's snapshot to the file at `path`, through PATH.partial renamed once the
  // whole stream arrived, so a failed export leaves no PATH.
  async exportSession(session, path) {
    const partial = `${path}.partial`;
    const file = await fs.promises.open(partial, 'w');
    try {
      try {
        const call = this._stub.ExportSession({ sessionId: idOf(session) }, this._metadata(), this._options());
        for await (const chunk of call) await file.write(chunk.data);
      } finally {
        await file.close();
      }
      await fs.promises.rename(partial, path);
    } catch (error) {
      await fs.promises.rm(partial, { force: true });
      throw RetainError.from(error);
    }
  }

  // A new Session from a snapshot file written by exportSession. The server checks it and refuses
  // damaged or foreign bytes, creating nothing.
  async importFrom(path) {
    const file = await fs.promises.open(path, 'r');
    let call;
    const done = new Promise((resolve, reject) => {
      call = this._stub.ImportSession(this._metadata(), this._options(),
        (error, response) => (error ? reject(RetainError.from(error)) : resolve(response)));
    });
    // A refusal can come while chunks are still being sent; it is awaited below, not lost.
    done.catch(() => {});
    try {
      const buffer = Buffer.alloc(CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, CHUNK_BYTES, null);
        if (bytesRead === 0) break;
        if (!call.write({ data: Buffer.from(buffer.subarray(0, bytesRead)) })) {
          await Promise.race([once(call, 'drain'), done]);
        }
      }
      call.end();
    } catch (error) {
      call.cancel();
      throw error;
    } finally {
      await file.close();
    }
    return new Session(this, await done);
  }

  // The served models ({name, architecture, vocabSize, ..., isDefault}).
  async models() {
    return (await this._unary('ListModels', {})).models;
  }

  async tokenize(text, model = '') {
    return (await this._unary('Tokenize', { model, text })).ids;
  }

  async detokenize(ids, model = '') {
    return (await this._unary('Detokenize', { model, ids })).text;
  }
}

module.exports = { Client, CHUNK_BYTES };
