'use strict';
// retain-client: the Node client of retain-server (retain.v1 over gRPC).
//
//   const { Client } = require('retain-client');
//   const client = new Client('127.0.0.1:50051');
//   for await (const piece of client.generate('And God said', { temperature: 0, maxTokens: 40 })) {
//     process.stdout.write(piece);
//   }
const { Client } = require('./client');
const { Generation } = require('./generation');
const { Session } = require('./session');
const { RetainError, status } = require('./errors');

module.exports = { Client, Generation, Session, RetainError, status };
