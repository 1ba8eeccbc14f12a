#!/usr/bin/env node
'use strict';
// Streams one generation to stdout as it arrives; the finish to stderr.
//   node client/node/examples/generate.js --temperature 0 --max-tokens 60 "And God said"
const { parse, connect } = require('./connect');

async function main() {
  const { values, positionals } = parse({ temperature: { type: 'string' }, 'max-tokens': { type: 'string', default: '60' } });
  const client = connect(values);
  try {
    const generation = client.generate(positionals.join(' '), {
      temperature: values.temperature === undefined ? undefined : Number(values.temperature),
      maxTokens: Number(values['max-tokens']),
    });
    for await (const piece of generation) process.stdout.write(piece);
    process.stdout.write('\n');
    const f = generation.finished;
    console.error(`[finished] reason=${f.reason} tokens=${f.usage.generatedTokens} position=${f.position} ` +
      `ids=${generation.tokenIds.slice(0, 8).join(',')}...`);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(`generate: ${error.message}`);
  process.exit(1);
});
