'use strict';
// client/node against a real retain-server on the shipped default model, held to the C++ `retain`
// CLI on the same server. Run by ctest (NodeClient): node --test test/client.test.js in client/node,
// with $RETAIN_SERVER_BIN and $RETAIN_CLI_BIN set (tests/CMakeLists.txt).
require('./installed');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const { Client, RetainError, status } = require('..');
const { cliGreedy, run } = require('./cli');
const { ServerProcess } = require('./server_process');

const PROMPT = 'And God said';
let server;
let client;
let tmp;

before(async () => {
  server = await ServerProcess.start();
  client = new Client(server.address, { timeout: 60 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retain-node-test-'));
});

after(async () => {
  client?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  await server?.stopAndCheck();
});

test('a greedy generation streams what the CLI gets', async () => {
  const want = await cliGreedy(server.address, PROMPT, 40);
  const generation = client.generate(PROMPT, { temperature: 0, maxTokens: 40 });
  const pieces = [];
  for await (const piece of generation) pieces.push(piece);
  assert.ok(pieces.length > 1, 'streamed, not one blob');
  assert.ok(pieces.every((p) => typeof p === 'string' && p.length > 0));
  assert.equal(pieces.join('') + '\n', want.text);
  assert.deepEqual(generation.tokenIds, want.ids);
  assert.equal(want.ids.length, 40);
  assert.equal(generation.reason, 'LENGTH');
  assert.equal(generation.finished.position, PROMPT.length + 40); // a byte-level model
  assert.equal(generation.started.promptTokens, PROMPT.length);
});

test('stop ends a generation with every sent token delivered', async () => {
  const want = await cliGreedy(server.address, PROMPT, 300);
  const session = await client.createSession();
  const generation = session.generate(PROMPT, { temperature: 0, maxTokens: 300 });
  let stop = null;
  // eslint-disable-next-line no-unused-vars
  for await (const _piece of generation) {
    if (generation.tokens.length >= 3 && !stop) stop = generation.stop(); // later tokens: sent before it
  }
  await stop;
  assert.equal(generation.reason, 'CANCELLED');
  const got = generation.tokenIds;
  assert.ok(got.length >= 3 && got.length < 300, `${got.length} tokens`);
  assert.deepEqual(got, want.ids.slice(0, got.length));
  assert.equal(generation.finished.position, PROMPT.length + got.length);
  assert.equal((await session.refresh()).position, PROMPT.length + got.length);
  // The session holds exactly the tokens read: its continuation is the fresh greedy one.
  const rest = session.generate(null, { temperature: 0, maxTokens: 8 });
  await rest.text();
  const fresh = client.generate(null, { tokens: [...Buffer.from(PROMPT), ...got], temperature: 0, maxTokens: 8 });
  await fresh.text();
  assert.deepEqual(rest.tokenIds, fresh.tokenIds);
  await generation.stop(); // finished: resolves, a no-op
  const early = session.generate(null, { temperature: 0, maxTokens: 300 });
  const earlyStop = early.stop(); // before `started`: it goes out when `started` arrives
  await early.text();
  await earlyStop;
  assert.equal(early.reason, 'CANCELLED');
  assert.equal((await session.refresh()).position, PROMPT.length + got.length + 8 + early.tokens.length);
  await session.delete();
});

test('prompt ids, stop strings, tokenize', async () => {
  const ids = await client.tokenize(PROMPT);
  assert.deepEqual(ids, [...Buffer.from(PROMPT)]);
  assert.equal(await client.detokenize(ids), PROMPT);
  const byText = await client.generate(PROMPT, { temperature: 0, maxTokens: 30 }).text();
  assert.equal(await client.generate(null, { tokens: ids, temperature: 0, maxTokens: 30 }).text(), byText);
  const stop = byText.slice(10, 14);
  const stopped = client.generate(PROMPT, { temperature: 0, maxTokens: 30, stop: [stop] });
  assert.equal(await stopped.text(), byText.slice(0, byText.indexOf(stop)));
  assert.equal(stopped.reason, 'STOP');
  assert.equal(stopped.finished.stop, stop);
});

test('create, generate, export, import, continue equals continuing the original', async () => {
  const original = await client.createSession('In the beginning');
  assert.equal(original.position, 'In the beginning'.length);
  assert.ok(await original.generate(' God', { temperature: 0, maxTokens: 12 }).text());
  const file = path.join(tmp, 'original.state');
  await original.exportTo(file);
  assert.ok(!fs.existsSync(`${file}.partial`));
  const copy = await client.importFrom(file);
  assert.notEqual(copy.id, original.id);
  assert.equal(copy.position, (await original.refresh()).position);
  assert.equal(copy.position, 'In the beginning God'.length + 12);
  // From the pending token alone, then with new text: the copy continues as the original does.
  for (const prompt of [null, ' and the earth']) {
    const want = original.generate(prompt, { temperature: 0, maxTokens: 15 });
    const got = copy.generate(prompt, { temperature: 0, maxTokens: 15 });
    assert.equal(await got.text(), await want.text());
    assert.deepEqual(got.tokenIds, want.tokenIds);
    assert.equal(got.finished.position, want.finished.position);
  }
  // Damaged bytes are refused and create nothing; a failed export leaves no file.
  const blob = fs.readFileSync(file);
  blob[blob.length >> 1] ^= 1;
  const damaged = path.join(tmp, 'damaged.state');
  fs.writeFileSync(damaged, blob);
  const count = (await client.listSessions()).length;
  await assert.rejects(client.importFrom(damaged), (e) => e instanceof RetainError &&
    [status.INVALID_ARGUMENT, status.FAILED_PRECONDITION].includes(e.code));
  assert.equal((await client.listSessions()).length, count);
  await original.delete();
  const gone = path.join(tmp, 'gone.state');
  await assert.rejects(original.exportTo(gone), (e) => e instanceof RetainError && e.code === status.NOT_FOUND);
  assert.ok(!fs.existsSync(gone) && !fs.existsSync(`${gone}.partial`));
  await assert.rejects(client.importFrom(path.join(tmp, 'missing.state')), (e) => e.code === 'ENOENT');
  await copy.delete();
});

test('list, get, fork, delete', async () => {
  const parent = await client.createSession('Amen.');
  const fork = await parent.fork();
  assert.equal(fork.position, parent.position);
  const listed = new Map((await client.listSessions()).map((s) => [s.id, s]));
  assert.ok(listed.has(parent.id) && listed.has(fork.id));
  assert.equal(listed.get(parent.id).model, 'rwkv7-kjv-byte');
  assert.equal((await client.getSession(parent.id)).position, 'Amen.'.length);
  assert.equal(await fork.generate(null, { temperature: 0, maxTokens: 10 }).text(),
    await parent.generate(null, { temperature: 0, maxTokens: 10 }).text());
  await parent.delete();
  await assert.rejects(client.getSession(parent.id), (e) => e instanceof RetainError && e.code === status.NOT_FOUND);
  await client.deleteSession(fork);
  assert.ok(!(await client.listSessions()).some((s) => s.id === fork.id));
});

test('a refused request rejects with a RetainError naming the field', async () => {
  await assert.rejects(client.generate(PROMPT, { topP: 2 }).text(), (e) =>
    e instanceof RetainError && e.codeName === 'INVALID_ARGUMENT' && e.details.includes('top_p'));
  assert.throws(() => client.generate(PROMPT, { temprature: 0 }), TypeError);
});

test('the example streams the same text', async () => {
  const want = await cliGreedy(server.address, PROMPT, 30);
  const { stdout, stderr } = await run(process.execPath, [path.join(__dirname, '..', 'examples', 'generate.js'),
    '--server', server.address, '--temperature', '0', '--max-tokens', '30', PROMPT]);
  assert.equal(stdout, want.text);
  assert.match(stderr, /reason=LENGTH/);
});
