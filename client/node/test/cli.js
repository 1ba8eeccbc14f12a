'use strict';
// The C++ `retain` CLI ($RETAIN_CLI_BIN): the reference the Node client is held to.
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { envPath } = require('./server_process');

const run = promisify(execFile);

// The CLI's text (stdout) and token ids (its --logprobs lines) for a greedy request.
async function cliGreedy(address, prompt, maxTokens, ...globalOptions) {
  const { stdout, stderr } = await run(envPath('RETAIN_CLI_BIN'), ['--server', address, ...globalOptions, 'generate',
    '--temperature', '0', '--max-tokens', String(maxTokens), '--logprobs', '1', prompt]);
  const ids = stderr.split('\n').filter((l) => l.startsWith('[token] id=')).map((l) => Number(/id=(\d+)/.exec(l)[1]));
  return { text: stdout, ids };
}

module.exports = { cliGreedy, run };
