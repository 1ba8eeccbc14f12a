'use strict';
// Required before the package: node_modules comes from deploy/install-deps.sh (npm ci), never from
// a test, so a missing one fails the test with what to run.
const fs = require('node:fs');
const path = require('node:path');

const MODULES = path.join(__dirname, '..', 'node_modules');
for (const name of ['@grpc/grpc-js', '@grpc/proto-loader']) {
  if (!fs.existsSync(path.join(MODULES, name, 'package.json'))) {
    throw new Error(`${MODULES} lacks ${name}: run deploy/install-deps.sh (it runs npm ci in client/node)`);
  }
}
