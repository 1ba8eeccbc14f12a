#!/usr/bin/env node
'use strict';
// A conversation kept on the server: create a session, generate on it, export it to a file,
// import it back and continue both; the two continuations are the same text.
//   node client/node/examples/session.js "In the beginning"
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parse, connect } = require('./connect');

async function main() {
  const { values, positionals } = parse({});
  const client = connect(values);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retain-session-'));
  try {
    const session = await client.createSession(positionals.join(' '));
    console.log(`created ${session.id} at position ${session.position}`);
    console.log('generated:', JSON.stringify(await session.generate(null, { temperature: 0, maxTokens: 30 }).text()));
    const file = path.join(tmp, 'session.state');
    await session.exportTo(file);
    const copy = await client.importFrom(file);
    console.log(`exported ${fs.statSync(file).size} bytes, imported as ${copy.id} at position ${copy.position}`);
    for (const s of [session, copy]) {
      const text = await s.generate(' And', { temperature: 0, maxTokens: 30 }).text();
      console.log(`${s.id.slice(0, 8)} continues:`, JSON.stringify(text));
    }
    console.log('sessions:', (await client.listSessions()).map((s) => `${s.id.slice(0, 8)}@${s.position}`).join(' '));
    await session.delete();
    await copy.delete();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    client.close();
  }
}

main().catch((error) => {
  console.error(`session: ${error.message}`);
  process.exit(1);
});
