'use strict';
// The official `openai` npm client against retain-server's OpenAI-compatible HTTP API
// (--http-listen), held to Generate over gRPC (this package's Client) on the same server and the
// same greedy settings. Run by ctest (OpenAiClient): node --test test/openai.test.js in
// client/node, with $RETAIN_SERVER_BIN set (tests/CMakeLists.txt).
require('./installed');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, test } = require('node:test');

if (!fs.existsSync(path.join(__dirname, '..', 'node_modules', 'openai', 'package.json')))
  throw new Error('client/node/node_modules lacks openai: run deploy/install-deps.sh (it runs npm ci in client/node)');
const { OpenAI } = require('openai');
const { Client } = require('..');
const { greedyText } = require('./greedy');
const { ServerProcess } = require('./server_process');

let server;
let grpcClient;
let openai;

before(async () => {
  server = await ServerProcess.start(['--http-listen', '127.0.0.1:0']);
  assert.ok(server.httpPort, `no "http on" in the start-up line:\n${server.log()}`);
  grpcClient = new Client(server.address, { timeout: 60 });
  openai = new OpenAI({ baseURL: `http://127.0.0.1:${server.httpPort}/v1`, apiKey: 'not-needed-without-auth-tokens' });
});

after(async () => {
  grpcClient?.close();
  await server?.stopAndCheck();
});

const grpcGreedy = (prompt, maxTokens, stop) => greedyText(grpcClient, prompt, maxTokens, stop);

test('a streamed chat completion is the gRPC greedy text of the rendered prompt, with usage', async () => {
  const question = 'Who was the father of Enos?';
  const prompt = `User: ${question}\n\nAssistant:`; // the RWKV World template, the default
  const want = await grpcGreedy(prompt, 30);
  const stream = await openai.chat.completions.create({
    model: (await openai.models.list()).data[0].id,
    messages: [{ role: 'user', content: question }],
    max_tokens: 30,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.ok(chunks > 3, 'streamed in pieces');
  assert.equal(text, want.text);
  assert.equal(finish, 'length');
  assert.deepEqual(usage, { prompt_tokens: Buffer.byteLength(prompt), completion_tokens: 30, total_tokens: Buffer.byteLength(prompt) + 30,
    prompt_tokens_details: { cached_tokens: 0 } });
  assert.equal(want.generation.tokenIds.length, 30);
});

test('a streamed completion is the gRPC greedy text; a stop string ends it with "stop"', async () => {
  const prompt = 'And God said';
  const full = await grpcGreedy(prompt, 48);
  const stream = await openai.completions.create({ model: '', prompt, max_tokens: 48, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) text += choice.text;
  }
  assert.equal(text, full.text);
  assert.equal(usage.completion_tokens, 48);
  assert.equal(usage.prompt_tokens, Buffer.byteLength(prompt));

  const stop = full.text.slice(20, 23);
  assert.equal(stop.length, 3);
  const cut = await grpcGreedy(prompt, 48, [stop]);
  assert.equal(cut.generation.reason, 'STOP');
  const stopped = await openai.completions.create({ prompt, max_tokens: 48, temperature: 0, stop: [stop], model: '' });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.choices[0].text, cut.text);
  assert.equal(stopped.choices[0].text, full.text.slice(0, full.text.indexOf(stop)));
  assert.equal(stopped.usage.completion_tokens, cut.generation.tokenIds.length);
});

test('a non-streamed chat completion, and errors as the client\'s own error classes', async () => {
  const question = 'What is the first day?';
  const want = await grpcGreedy(`User: ${question}\n\nAssistant:`, 16);
  const done = await openai.chat.completions.create({ model: '', messages: [{ role: 'user', content: question }],
    max_tokens: 16, temperature: 0 });
  assert.equal(done.choices[0].message.role, 'assistant');
  assert.equal(done.choices[0].message.content, want.text);
  assert.equal(done.choices[0].finish_reason, 'length');
  await assert.rejects(
    openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.param === 'model');
  await assert.rejects(
    openai.chat.completions.create({ model: '', messages: [{ role: 'user', content: 'x' }], n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n' && /must be 1/.test(e.message));
});
