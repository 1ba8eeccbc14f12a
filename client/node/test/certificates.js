'use strict';
// Certificates for the TLS tests, made at test time with the openssl CLI (never committed). EC
// P-256 keys: generated in milliseconds, where RSA takes a noticeable while on a busy machine.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const NEW_KEY = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out'];

function openssl(...args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function signed(dir, name, commonName, extensions) {
  const base = path.join(dir, name);
  openssl(...NEW_KEY, `${base}.key`);
  fs.writeFileSync(`${base}.ext`, extensions);
  openssl('req', '-new', '-key', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${commonName}`);
  openssl('x509', '-req', '-in', `${base}.csr`, '-CA', path.join(dir, 'ca.pem'), '-CAkey', path.join(dir, 'ca.key'),
    '-CAcreateserial', '-out', `${base}.pem`, '-days', '2', '-extfile', `${base}.ext`);
}

// In `dir`: ca.pem (a CA), server.pem/.key (signed by it, for 127.0.0.1 and localhost) and
// client.pem/.key (signed by it, for client authentication). Returns their paths.
function makeCertificates(dir) {
  openssl(...NEW_KEY, path.join(dir, 'ca.key'));
  openssl('req', '-x509', '-new', '-key', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'), '-days', '2',
    '-subj', '/CN=retain-test-ca');
  signed(dir, 'server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  signed(dir, 'client', 'retain-test-client', 'extendedKeyUsage=clientAuth\n');
  const file = (name) => path.join(dir, name);
  return { ca: file('ca.pem'), serverCert: file('server.pem'), serverKey: file('server.key'),
    clientCert: file('client.pem'), clientKey: file('client.key') };
}

module.exports = { makeCertificates };
