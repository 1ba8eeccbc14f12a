'use strict';
// The playground page (GET / of --http-listen) in a real browser: Debian's chromium, headless,
// driven by puppeteer-core (pointed at the system browser; nothing downloads one). It loads the
// page, sends a prompt, waits for the streamed answer and finds the gRPC greedy text of the same
// chat prompt; a screenshot is saved for a person to look at. Run by ctest (Playground) with
// $RETAIN_SERVER_BIN, $RETAIN_CHROMIUM_BIN and $RETAIN_SCREENSHOT (tests/CMakeLists.txt).
require('./installed');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, test } = require('node:test');

if (!fs.existsSync(path.join(__dirname, '..', 'node_modules', 'puppeteer-core', 'package.json')))
  throw new Error('client/node/node_modules lacks puppeteer-core: run deploy/install-deps.sh (npm ci in client/node)');
const puppeteer = require('puppeteer-core');
const { Client } = require('..');
const { greedyText } = require('./greedy');
const { ServerProcess, envPath } = require('./server_process');

let server;
let grpcClient;
let browser;

before(async () => {
  server = await ServerProcess.start(['--http-listen', '127.0.0.1:0']);
  grpcClient = new Client(server.address, { timeout: 60 });
  browser = await puppeteer.launch({
    executablePath: envPath('RETAIN_CHROMIUM_BIN'),
    headless: true,
    // No sandbox: test machines run as root, where chromium refuses its sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  grpcClient?.close();
  await server?.stopAndCheck();
});

test('the playground streams the gRPC greedy answer and shows its timings', async () => {
  const question = 'Who created the heaven and the earth?';
  const want = (await greedyText(grpcClient, `User: ${question}\n\nAssistant:`, 40)).text;
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 700 });
  const external = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(`http://127.0.0.1:${server.httpPort}/`)) external.push(r.url());
  });
  await page.goto(`http://127.0.0.1:${server.httpPort}/`, { waitUntil: 'networkidle0' });
  await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0);
  await page.$eval('#max-tokens', (el) => { el.value = '40'; });
  await page.$eval('#temperature', (el) => { el.value = '0'; });
  await page.type('#prompt', question);
  await page.click('#send');
  // Streamed: the answer grows before the request is done.
  await page.waitForFunction(() => {
    const a = document.querySelectorAll('.msg.assistant');
    return a.length > 0 && a[a.length - 1].textContent.length > 0;
  });
  await page.waitForFunction(() => document.querySelector('#status').textContent !== 'generating', { timeout: 60000 });
  assert.equal(await page.$eval('#status', (el) => el.textContent), 'done');
  const answer = await page.$$eval('.msg.assistant', (els) => els[els.length - 1].textContent);
  assert.equal(answer, want);
  assert.match(await page.$eval('#ttft', (el) => el.textContent), /^\d+\.\d{3} s$/);
  assert.match(await page.$eval('#tps', (el) => el.textContent), /^\d+(\.\d)?$/);
  assert.equal(await page.$eval('#tokens', (el) => el.textContent), '40');
  assert.equal(await page.$eval('#finish', (el) => el.textContent), 'length');
  assert.equal(await page.$eval('#health', (el) => el.textContent), 'serving');
  assert.deepEqual(external, [], 'the page loads nothing from elsewhere');
  const shot = envPath('RETAIN_SCREENSHOT');
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot });
  assert.ok(fs.statSync(shot).size > 10000, 'a screenshot with something on it');
});

test('the playground continues a session on the server, and forks it', async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.httpPort}/`, { waitUntil: 'networkidle0' });
  await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0);
  await page.$eval('#max-tokens', (el) => { el.value = '12'; });
  await page.click('#new-session');
  await page.waitForFunction(() => document.querySelector('#session-id').textContent.startsWith('session '));
  const session = (await page.$eval('#session-id', (el) => el.textContent)).slice('session '.length);
  const send = async (text) => {
    await page.type('#prompt', text);
    await page.click('#send');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'done' &&
      !document.querySelector('#send').disabled, { timeout: 60000 });
  };
  await send('Who made light?');
  // The same turns over gRPC, in a session of their own.
  const g = await grpcClient.createSession();
  const first = (await greedyText(g, 'User: Who made light?\n\nAssistant:', 12)).text;
  await send('And darkness?');
  const second = (await greedyText(g, '\n\nUser: And darkness?\n\nAssistant:', 12)).text;
  const answers = await page.$$eval('.msg.assistant', (els) => els.map((e) => e.textContent));
  assert.deepEqual(answers, [first, second]);
  const info = await grpcClient.getSession(session);
  assert.equal(info.position, (await grpcClient.getSession(g.id)).position);
  await page.click('#fork-session');
  await page.waitForFunction((old) => !document.querySelector('#session-id').textContent.endsWith(old), {}, session);
  const forked = (await page.$eval('#session-id', (el) => el.textContent)).slice('session '.length);
  assert.notEqual(forked, session);
  assert.equal((await grpcClient.getSession(forked)).position, info.position);
});
