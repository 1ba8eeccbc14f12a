"""Generates the retain.v1 stubs from ../../proto while the package is built, so they are never
committed and always match the proto the package is built beside. Uses the same tools as the
CMake build: protoc (protobuf-compiler) and grpc_python_plugin (protobuf-compiler-grpc)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "proto"))
PROTO = "retain/v1/retain.proto"


def tool(name, env):
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        raise SystemExit(f"retain-client: {name} not found (deploy/install-deps.sh installs it; or set ${env})")
    return path


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        if not os.path.isfile(os.path.join(PROTO_ROOT, PROTO)):
            raise SystemExit(f"retain-client: {os.path.join(PROTO_ROOT, PROTO)} not found: build from the "
                             "retain checkout (client/python), where proto/ is two folders up")
        # The stubs keep their proto package name (retain.v1: namespace packages, no __init__.py),
        # because retain_pb2_grpc imports retain_pb2 by that absolute name.
        os.makedirs(self.build_lib, exist_ok=True)
        subprocess.run([tool("protoc", "PROTOC"), "-I", PROTO_ROOT, f"--python_out={self.build_lib}",
                        f"--grpc_out={self.build_lib}",
                        f"--plugin=protoc-gen-grpc={tool('grpc_python_plugin', 'GRPC_PYTHON_PLUGIN')}",
                        os.path.join(PROTO_ROOT, PROTO)],
                       check=True)


setup(cmdclass={"build_py": BuildWithStubs})
