'use strict';
// Loads retain.v1 straight from the .proto at run time (no generated code). In the checkout that
// is proto/ two folders up; a packed package (npm pack) carries a copy made by copy_proto.js.
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.join('retain', 'v1', 'retain.proto');
const ROOTS = [path.join(__dirname, '..', '..', '..', 'proto'), path.join(__dirname, '..', 'proto')];

function protoRoot() {
  const root = ROOTS.find((r) => fs.existsSync(path.join(r, PROTO)));
  if (!root) throw new Error(`retain-client: ${PROTO} not found under ${ROOTS.join(' or ')}`);
  return root;
}

let cached;

// The retain.v1 package: the Retain service constructor and the message types. Fields are
// camelCase, int64 fields plain numbers (positions and byte counts stay far below 2^53), enums
// their names, and `event` names the Generate response's oneof member that is set.
function retainV1() {
  if (!cached) {
    const definition = protoLoader.loadSync(PROTO, {
      includeDirs: [protoRoot()], longs: Number, enums: String, defaults: true, oneofs: true,
    });
    cached = grpc.loadPackageDefinition(definition).retain.v1;
  }
  return cached;
}

module.exports = { retainV1, PROTO, ROOTS };
