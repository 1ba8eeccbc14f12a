'use strict';
// The Node client through TLS with a bearer token (a server with --tls-cert/--tls-key and
// --auth-tokens, tenants alice and bob), and with a client certificate (a second server that also
// has --tls-client-ca), held to the C++ CLI through the same. Certificates are made now by openssl.
// Run by ctest (NodeClient) beside client.test.js.
require('./installed');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const { Client, RetainError, status } = require('..');
const { makeCertificates } = require('./certificates');
const { cliGreedy } = require('./cli');
const { ServerProcess } = require('./server_process');

const PROMPT = 'And God said';
const token = crypto.randomBytes(16).toString('hex');
const otherToken = crypto.randomBytes(16).toString('hex');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retain-node-tls-'));
const servers = [];
let certs;
let server;
let mtlsServer;
let client;

before(async () => {
  certs = makeCertificates(tmp);
  const tokens = path.join(tmp, 'tokens');
  const hashed = crypto.createHash('sha256').update(otherToken).digest('hex');
  fs.writeFileSync(tokens, `alice ${token}\nbob sha256:${hashed}\n`);
  const tls = ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey];
  servers.push(server = await ServerProcess.start([...tls, '--auth-tokens', tokens]));
  servers.push(mtlsServer = await ServerProcess.start([...tls, '--tls-client-ca', certs.ca]));
  client = new Client(server.address, { token, tls: certs.ca, timeout: 60 });
});

after(async () => {
  client?.close();
  for (const s of servers) await s.stopAndCheck();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function refused(target, options, codeName) {
  const c = new Client(target, options);
  try {
    await assert.rejects(c.models(), (e) => e instanceof RetainError && e.codeName === codeName);
  } finally {
    c.close();
  }
}

test('a greedy generation through TLS with a token is the CLI\'s', async () => {
  const want = await cliGreedy(server.address, PROMPT, 30, '--tls-ca', certs.ca, '--token', token);
  const generation = client.generate(PROMPT, { temperature: 0, maxTokens: 30 });
  assert.equal(await generation.text() + '\n', want.text);
  assert.deepEqual(generation.tokenIds, want.ids);
});

test('a session through TLS with a token moves through a file', async () => {
  const original = await client.createSession('In the beginning');
  await original.generate(' God', { temperature: 0, maxTokens: 10 }).text();
  const file = path.join(tmp, 'secure.state');
  await original.exportTo(file);
  const copy = await client.importFrom(file);
  assert.equal(copy.position, (await original.refresh()).position);
  assert.equal(await copy.generate(' and', { temperature: 0, maxTokens: 15 }).text(),
    await original.generate(' and', { temperature: 0, maxTokens: 15 }).text());
  // The other tenant sees neither.
  const bob = new Client(server.address, { token: otherToken, tls: { ca: certs.ca }, timeout: 60 });
  try {
    assert.deepEqual(await bob.listSessions(), []);
    await assert.rejects(bob.getSession(copy.id), (e) => e.code === status.NOT_FOUND);
  } finally {
    bob.close();
  }
  await original.delete();
  await copy.delete();
});

test('a wrong or missing token is UNAUTHENTICATED', async () => {
  await refused(server.address, { token: `not-${token}`, tls: certs.ca, timeout: 60 }, 'UNAUTHENTICATED');
  await refused(server.address, { tls: certs.ca, timeout: 60 }, 'UNAUTHENTICATED');
  const wrong = new Client(server.address, { token: 'wrong', tls: certs.ca, timeout: 60 });
  try {
    await assert.rejects(wrong.generate(PROMPT, { maxTokens: 5 }).text(), (e) => e.code === status.UNAUTHENTICATED);
  } finally {
    wrong.close();
  }
});

test('plain text to a TLS server fails', async () => {
  await refused(server.address, { token, timeout: 10 }, 'UNAVAILABLE');
});

test('a client certificate is sent, and needed, with mTLS', async () => {
  const mtls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
  const want = await cliGreedy(mtlsServer.address, PROMPT, 20, '--tls-ca', certs.ca, '--tls-cert', certs.clientCert,
    '--tls-key', certs.clientKey);
  const c = new Client(mtlsServer.address, { tls: mtls, timeout: 60 });
  try {
    assert.equal(await c.generate(PROMPT, { temperature: 0, maxTokens: 20 }).text() + '\n', want.text);
  } finally {
    c.close();
  }
  await refused(mtlsServer.address, { tls: certs.ca, timeout: 10 }, 'UNAVAILABLE');
});
