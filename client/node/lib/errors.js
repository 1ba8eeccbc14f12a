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

  // A gRPC error (a numeric code and details) as a RetainError; anything else as it is.
  static from(error) {
    const fromGrpc = !(error instanceof RetainError) && typeof error.code === 'number' && 'details' in error;
    return fromGrpc ? new RetainError(error.code, error.details) : error;
  }
}

module.exports = { RetainError, status: grpc.status };
