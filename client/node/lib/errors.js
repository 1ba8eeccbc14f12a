'use strict';
const grpc = require('@grpc/grpc-js');

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

// A call that ended with a gRPC status other than OK: `code` (a number, grpc.status), `codeName`
// ('NOT_FOUND', ...) and `details`, the server's message naming the offending field.
class RetainError extends Error {
  constructor(code, details) {
    super(`${CODE_NAMES[code] ?? code}: ${details}`);
    this.name = 'RetainError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? String(code);
    this.details = details;
  }

  static from(error) {
    return error instanceof RetainError || error.code === undefined ? error : new RetainError(error.code, error.details);
  }
}

module.exports = { RetainError, status: grpc.status };
