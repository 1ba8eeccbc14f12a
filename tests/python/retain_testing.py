"""Shared by the Python tests: start and stop a real retain-server, read safetensors.

The server is started on 127.0.0.1 port 0; its start-up line on stderr
("... retain-server: listening on 127.0.0.1:PORT (plaintext); ...") says the bound port.
Its stderr is drained by a thread for as long as it runs (kept for failure messages).
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_HTTP = re.compile(r"http on https?://127\.0\.0\.1:(\d+)")
_METRICS = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"${name} is not set (ctest sets it; see tests/CMakeLists.txt)")
    return value


class ServerProcess:
    """A retain-server child process on 127.0.0.1:0 (a context manager)."""

    def __init__(self, args=(), start_timeout=60.0):
        binary = env_path("RETAIN_SERVER_BIN")
        self.argv = [binary, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", *args]
        self.lines = []
        self._lock = threading.Lock()
        self._port_ready = threading.Event()
        self.port = None
        self.http_port = None  # with --http-listen 127.0.0.1:0
        self.metrics_port = None
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._port_ready.wait(start_timeout) or self.port is None:
            self.stop()
            raise RuntimeError(f"retain-server did not say where it listens within {start_timeout} s; "
                               f"argv {self.argv}; stderr:\n{self.log()}")

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
            if self.port is None:
                m = _LISTENING.search(line)
                if m:
                    self.port = int(m.group(1))
                    h = _HTTP.search(line)
                    self.http_port = int(h.group(1)) if h else None
                    p = _METRICS.search(line)
                    self.metrics_port = int(p.group(1)) if p else None
                    self._port_ready.set()
        self._port_ready.set()  # the process ended (without the line, port stays None)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def log(self):
        with self._lock:
            return "\n".join(self.lines[-200:])

    def stop(self, timeout=30.0):
        """SIGTERM (the server drains and exits 0), SIGKILL after `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def stop_and_check(self, timeout=30.0):
        """stop(); an AssertionError, with the server's stderr, unless it exited 0."""
        rc = self.stop(timeout)
        if rc != 0:
            raise AssertionError(f"retain-server exited {rc} on SIGTERM; stderr:\n{self.log()}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def read_safetensors(path):
    """{name: (shape, [floats])} for the F32 tensors of a .safetensors file (8-byte header
    length, a JSON header, then the data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {meta['dtype']}, only F32 is read here")
        begin, end = meta["data_offsets"]
        count = (end - begin) // 4
        out[name] = (meta["shape"], list(struct.unpack_from(f"<{count}f", blob, base + begin)))
    return out


def argmax(row):
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


def conformance_kit(name):
    """The directory of conformance kit `name`: tests/data/conformance, else ../shared/conformance."""
    candidates = []
    if os.environ.get("RETAIN_TEST_DATA_DIR"):
        candidates.append(os.path.join(os.environ["RETAIN_TEST_DATA_DIR"], "conformance", name))
    source = os.environ.get("RETAIN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    candidates.append(os.path.join(source, "tests", "data", "conformance", name))
    candidates.append(os.path.join(source, "..", "shared", "conformance", name))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "case.json")):
            return os.path.abspath(c)
    return None


class RedisServer:
    """A redis-server child on 127.0.0.1 with `args` (default: no persistence) in `directory` (default:
    a temporary one, removed by stop()), and a minimal RESP client for the tests' own reads and
    writes (redis-cli cannot send binary field values)."""

    NO_PERSISTENCE = ("--save", "", "--appendonly", "no")

    def __init__(self, args=NO_PERSISTENCE, port=None, directory=None, password=None, sentinel_conf=None):
        """`password`: started with --requirepass, and the client sends AUTH. `sentinel_conf`: a
        Sentinel, from that config text (written to its directory: Sentinel rewrites it)."""
        self.port = port or free_port()
        self.password = password
        self.own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="retain-redis-")
        argv = ["redis-server"]
        if sentinel_conf is not None:
            conf = os.path.join(self.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(sentinel_conf)
            argv += [conf, "--sentinel"]
            args = ()
        argv += [*args, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        if password:
            argv += ["--requirepass", password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(self._answers, timeout=20):
            self.stop()
            raise RuntimeError(f"redis-server {argv[1:]} did not answer PING on 127.0.0.1:{self.port}")

    def _answers(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:  # not listening yet
            return False
        except RuntimeError as e:  # LOADING its append-only file; NOAUTH (--requirepass) answers
            return str(e).startswith("NOAUTH")

    def command(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s, s.makefile("rb") as f:
            if self.password:
                s.sendall(self._encode(("AUTH", self.password)))
                self._read(f)
            s.sendall(self._encode(args))
            return self._read(f)

    @staticmethod
    def _encode(args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out

    def _read(self, f):
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:n]
            return data
        if kind == b"*":
            return [self._read(f) for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def stop(self, graceful=False):
        """SIGKILL, or with `graceful` SIGTERM as the kubelet sends (Redis then writes out its
        append-only file before it exits). Removes the directory only when it made it."""
        if self.proc.poll() is None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait(30)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def free_port():
    """A TCP port free on 127.0.0.1 now (for a child process that cannot be told port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def greedy(tokens=(), max_tokens=16, session=""):
    """A greedy GenerateRequest that ignores EOS, so its length is known (exact-replay tests)."""
    from retain.v1 import retain_pb2 as pb  # the generated stubs, on PYTHONPATH under ctest
    req = pb.GenerateRequest(session_id=session)
    req.prompt_tokens.extend(tokens)
    req.sampling.temperature = 0.0
    req.stopping.max_tokens = max_tokens
    req.stopping.ignore_eos = True
    return req
