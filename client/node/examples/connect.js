'use strict';
// The connection flags both examples take: --server, --token, --tls-ca, --tls-cert, --tls-key.
const { parseArgs } = require('node:util');
const { Client } = require('..');

const CONNECTION = {
  server: { type: 'string', default: process.env.RETAIN_SERVER || '127.0.0.1:50051' },
  token: { type: 'string', default: process.env.RETAIN_TOKEN },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
};

function parse(options) {
  return parseArgs({ options: { ...CONNECTION, ...options }, allowPositionals: true });
}

function connect(values) {
  const tls = values['tls-ca'] || values['tls-cert']
    ? { ca: values['tls-ca'], cert: values['tls-cert'], key: values['tls-key'] } : undefined;
  return new Client(values.server, { token: values.token, tls, timeout: 60 });
}

module.exports = { parse, connect };
