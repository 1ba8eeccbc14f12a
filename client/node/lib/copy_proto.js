'use strict';
// npm pack / publish (prepack): a packed package has no checkout around it, so it carries its own
// copy of the proto (git-ignored; proto.js prefers the checkout's when both exist).
const fs = require('node:fs');
const path = require('node:path');
const { PROTO, ROOTS } = require('./proto');

const [checkout, packaged] = ROOTS;
fs.mkdirSync(path.dirname(path.join(packaged, PROTO)), { recursive: true });
fs.copyFileSync(path.join(checkout, PROTO), path.join(packaged, PROTO));
