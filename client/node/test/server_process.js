'use strict';
// A real retain-server child on 127.0.0.1 port 0 ($RETAIN_SERVER_BIN, set by ctest); its start-up
// line on stderr ("retain-server: listening on 127.0.0.1:PORT ...") says the bound port. Stderr is
// kept for failure messages.
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;
const HTTP = /http on http:\/\/127\.0\.0\.1:(\d+)/; // with --http-listen

function envPath(name) {
  const value = process.env[name];
  if (!value) throw new Error(`$${name} is not set (ctest sets it; see tests/CMakeLists.txt)`);
  return value;
}

class ServerProcess {
  static start(args = []) {
    const server = new ServerProcess(args);
    return server._ready;
  }

  constructor(args) {
    this.argv = ['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--threads', '1', ...args];
    this.lines = [];
    this.proc = spawn(envPath('RETAIN_SERVER_BIN'), this.argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this._exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    this._ready = new Promise((resolve, reject) => {
      readline.createInterface({ input: this.proc.stderr }).on('line', (line) => {
        this.lines.push(line);
        const m = this.port === undefined && LISTENING.exec(line);
        if (m) {
          this.port = Number(m[1]);
          const h = HTTP.exec(line);
          if (h) this.httpPort = Number(h[1]);
          resolve(this);
        }
      });
      this._exited.then(({ code, signal }) => reject(new Error(
        `retain-server exited (${code ?? signal}) before it listened; argv ${this.argv.join(' ')}; stderr:\n${this.log()}`)));
    });
  }

  get address() {
    return `127.0.0.1:${this.port}`;
  }

  log() {
    return this.lines.slice(-200).join('\n');
  }

  // SIGTERM (the server drains and exits 0); throws with its stderr otherwise.
  async stopAndCheck() {
    this.proc.kill('SIGTERM');
    const { code, signal } = await this._exited;
    if (code !== 0) throw new Error(`retain-server exited ${code ?? signal} on SIGTERM; stderr:\n${this.log()}`);
  }
}

module.exports = { ServerProcess, envPath };
