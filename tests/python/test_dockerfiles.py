"""Dockerfile and Dockerfile.cuda held to the scripts (ctest DockerImages). No container engine runs
here, so the test reads the files: every RUN step calls a script of the checkout that CI runs (the
ones scripts/test.sh runs, which .ci/run runs, and deploy/runtime-libs.sh, run below with the very
arguments of the Dockerfile on the binaries of this build); the runtime stage gets exactly the
binaries whose libraries were listed; every library `ldd` reports for them is found and belongs to
a package of that list; ports, user, health check and entry point are what the server has."""

import functools
import json
import os
import re
import shlex
import subprocess
import tempfile
import unittest
from pathlib import Path

from retain_testing import env_path

SOURCE = env_path("RETAIN_SOURCE_DIR")
BINARIES = {"build/server/retain-server": env_path("RETAIN_SERVER_BIN"),
            "build/client/retain": env_path("RETAIN_CLI_BIN")}
RUNTIME_LIBS = "deploy/runtime-libs.sh"
HTTP_PORT = "8080"  # the images' --http-listen port (the server has no default: HTTP is off unless asked)


def read_dockerfile(name):
    """[(stage FROM args, [(INSTRUCTION, text)])] with continuation lines joined, comments dropped."""
    lines, joined = Path(os.path.join(SOURCE, name)).read_text().splitlines(), []
    current = ""
    for line in lines:
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    stages = []
    for line in joined:
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append((rest.split(), []))
        elif stages:
            stages[-1][1].append((instruction, rest.strip()))
    return stages


def scripts_called(command):
    """The `bash SCRIPT ARGS` calls of a shell command (its && pieces), and the other pieces."""
    calls, others = [], []
    for piece in re.split(r"&&|;", command):
        words = shlex.split(piece.split(">")[0])
        if words and words[0] == "bash":
            calls.append(words[1:])
        elif words:
            others.append(words)
    return calls, others


def ci_scripts():
    """Scripts .ci/run runs: scripts/test.sh and every `bash X` in it."""
    ci = Path(os.path.join(SOURCE, ".ci/run")).read_text()
    assert re.search(r"^bash scripts/test\.sh$", ci, re.M), ".ci/run no longer runs scripts/test.sh"
    test_sh = Path(os.path.join(SOURCE, "scripts/test.sh")).read_text()
    return {"scripts/test.sh", *re.findall(r"^bash (\S+\.sh)", test_sh, re.M)}


def owners(paths):
    """{library path: the Debian package owning it}, by one dpkg-query (merged /usr: dpkg may know
    a library as /lib/... or /usr/lib/..., or only the file its link names)."""
    variants = {}
    for path in paths:
        real = os.path.realpath(path)
        variants[path] = [path, real, *(q[4:] if q.startswith("/usr/") else "/usr" + q for q in (path, real))]
    r = subprocess.run(["dpkg-query", "-S", *sorted({v for vs in variants.values() for v in vs})],
                       capture_output=True, text=True)
    known = {}
    for line in r.stdout.splitlines():
        packages, _, file = line.partition(": /")
        known["/" + file] = packages.split(",")[0].split(":")[0]
    return {path: next((known[v] for v in vs if v in known), None) for path, vs in variants.items()}


@functools.cache
def runtime_libs_list(binaries):
    """deploy/runtime-libs.sh list BINARIES (run once for both Dockerfiles): (returncode, out, err)."""
    r = subprocess.run(["bash", os.path.join(SOURCE, RUNTIME_LIBS), "list", *binaries], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


class DockerfileTest:
    NAME = None

    @classmethod
    def setUpClass(cls):
        cls.stages = read_dockerfile(cls.NAME)
        cls.build_dir = None
        for instruction, text in cls.stages[0][1]:
            if instruction == "WORKDIR":
                cls.build_dir = text
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def repo_path(self, path):
        """A path in the build stage (relative to its WORKDIR, or under it) -> path in the checkout."""
        prefix = self.build_dir.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path

    def runtime(self):
        return self.stages[-1][1]

    def last(self, instruction):
        found = [text for i, text in self.runtime() if i == instruction]
        self.assertTrue(found, f"{self.NAME}: the runtime stage has no {instruction}")
        return found[-1]

    def test_multi_stage_from_the_checkout(self):
        self.assertGreaterEqual(len(self.stages), 2)
        self.assertEqual(self.stages[0][0][-2:], ["AS", "build"])
        self.assertIn(("COPY", ". ."), self.stages[0][1])

    def test_every_run_step_calls_a_script_ci_runs(self):
        ci = ci_scripts()
        self.assertTrue({"deploy/install-deps.sh", "scripts/build.sh"} <= ci, ci)
        called = []
        for _, steps in self.stages:
            for instruction, text in steps:
                if instruction != "RUN":
                    continue
                command = re.sub(r"^(--\S+\s+)+", "", text)
                calls, others = scripts_called(command)
                self.assertTrue(calls, f"{self.NAME}: RUN {text!r} calls no script")
                for words in others:  # only clean-up beside the scripts
                    self.assertEqual(words[:2], ["rm", "-rf"], f"{self.NAME}: RUN {text!r}: {words}")
                for script, *args in calls:
                    script = self.repo_path(script)
                    self.assertTrue(os.path.isfile(os.path.join(SOURCE, script)), f"{self.NAME}: {script} missing")
                    self.assertTrue(script in ci or script == RUNTIME_LIBS,
                                    f"{self.NAME}: {script} is not run by CI ({sorted(ci)} or {RUNTIME_LIBS})")
                    if script == "scripts/build.sh":  # extra arguments go to CMake: options only
                        self.assertTrue(all(a.startswith("-D") for a in args), args)
                    called.append((script, [self.repo_path(a) for a in args]))
        self.assertEqual([s for s, _ in called[:2]], ["deploy/install-deps.sh", "scripts/build.sh"])
        # deploy/runtime-libs.sh as the image runs it, on this build's binaries.
        lists = [args for s, args in called if s == RUNTIME_LIBS and args[0] == "list"]
        installs = [args for s, args in called if s == RUNTIME_LIBS and args[0] == "install"]
        self.assertEqual((len(lists), len(installs)), (1, 1), called)
        self.assertEqual(set(lists[0][1:]), set(BINARIES), "list the libraries of both binaries")
        rc, packages, err = runtime_libs_list(tuple(BINARIES[b] for b in lists[0][1:]))
        self.assertEqual(rc, 0, f"runtime-libs.sh list: {err}")
        names = packages.split()
        self.assertIn("libgrpc++1.51", names)
        self.assertFalse([p for p in names if p.endswith("-dev")], "a -dev package in the runtime list")
        self.check_ldd(names)
        listed = os.path.join(self.tmp.name, "runtime-packages.txt")
        with open(listed, "w") as f:
            f.write(packages)
        self.assertIn(f"all {len(names)} packages present", self.run_runtime_libs(["install", listed]))
        # The runtime stage copies exactly those binaries.
        copies = [text.split() for i, text in self.runtime() if i == "COPY" and text.startswith("--from=build")]
        copied_binaries = {self.repo_path(p) for c in copies for p in c[1:-1] if p.startswith(self.build_dir + "/build/")}
        self.assertEqual(copied_binaries, set(BINARIES))

    def run_runtime_libs(self, args):
        r = subprocess.run(["bash", os.path.join(SOURCE, RUNTIME_LIBS), *args], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"runtime-libs.sh {args}: {r.stderr}")
        return r.stdout

    def check_ldd(self, packages):
        for name, binary in BINARIES.items():
            out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
            self.assertNotIn("not found", out, f"{name}: {out}")
            paths = re.findall(r"(?:=> )?(/\S+) \(0x", out)
            self.assertGreater(len(paths), 5, out)
            for path, package in owners(paths).items():
                self.assertIn(package, packages, f"{name} links {path} (of {package}), not in the runtime list")

    def test_model_at_the_compiled_default_path(self):
        models = [text.split() for i, text in self.runtime() if i == "COPY" and "models" in text]
        self.assertEqual(models, [["--from=build", f"{self.build_dir}/models", f"{self.build_dir}/models"]])
        cache = os.path.join(os.path.dirname(os.path.dirname(BINARIES["build/server/retain-server"])), "CMakeCache.txt")
        default = re.search(r"^RETAIN_DEFAULT_MODEL:PATH=(.*)$", Path(cache).read_text(), re.M).group(1)
        self.assertEqual(default, os.path.join(SOURCE, "models", "rwkv7-kjv-byte"))  # checkout/models: WORKDIR/models

    def test_runtime_user_ports_health_entrypoint(self):
        user = self.last("USER")
        uid, _, gid = user.partition(":")
        self.assertTrue(uid.isdigit() and int(uid) > 0 and gid.isdigit(), user)
        help_text = subprocess.run([BINARIES["build/server/retain-server"], "--help"], capture_output=True,
                                   text=True, check=True).stdout
        grpc_port = re.search(r"--listen HOST:PORT=[\d.]+:(\d+)", help_text).group(1)
        metrics_port = re.search(r"--metrics-listen HOST:PORT=[\d.]+:(\d+)", help_text).group(1)
        # The HTTP API has no default address (off unless --http-listen): the images choose 8080.
        self.assertIn("  --http-listen HOST:PORT ", help_text)
        self.assertEqual(self.last("EXPOSE").split(), [grpc_port, metrics_port, HTTP_PORT])
        self.assertEqual(self.last("ENTRYPOINT"), '["retain-server"]')
        cmd = json.loads(self.last("CMD"))
        self.assertEqual(cmd, ["--listen", f"0.0.0.0:{grpc_port}", "--metrics-listen", f"0.0.0.0:{metrics_port}",
                               "--http-listen", f"0.0.0.0:{HTTP_PORT}"])
        for flag in cmd[::2]:
            self.assertIn(f"  {flag} ", help_text)
        health = self.last("HEALTHCHECK")
        probe = json.loads(health[health.index("CMD") + 3:])
        self.assertEqual((probe[0], probe[-1]), ("retain", "health"))
        self.assertEqual(probe[probe.index("--server") + 1], f"127.0.0.1:{grpc_port}")


class Dockerfile(DockerfileTest, unittest.TestCase):
    NAME = "Dockerfile"

    def test_bases(self):
        self.assertEqual([s[0][0] for s in self.stages], ["debian:12", "debian:12-slim"])


class DockerfileCuda(DockerfileTest, unittest.TestCase):
    NAME = "Dockerfile.cuda"

    def test_bases(self):
        froms = [s[0][0] for s in self.stages]
        self.assertTrue(froms[0].startswith("nvidia/cuda:") and froms[0].endswith("-devel-ubuntu24.04"), froms)
        self.assertTrue(froms[1].startswith("nvidia/cuda:") and froms[1].endswith("-runtime-ubuntu24.04"), froms)


if __name__ == "__main__":
    unittest.main()
