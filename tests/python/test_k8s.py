"""deploy/k8s held to the real server (ctest K8sManifests): `kubectl kustomize` renders the base and
the cuda overlay offline, `yamllint` passes, and every port, probe, flag and metric name in the
rendered objects agrees with `retain-server --help` and with a real server started on 127.0.0.1
with the Deployment's own arguments (the ConfigMap's $(VARS) expanded as the kubelet does)."""

import json
import os
import re
import shutil
import subprocess
import unittest
import urllib.request
from pathlib import Path

import yaml

from retain_testing import ServerProcess, env_path

SOURCE = env_path("RETAIN_SOURCE_DIR")
SERVER = env_path("RETAIN_SERVER_BIN")
CLI = env_path("RETAIN_CLI_BIN")
K8S = os.path.join(SOURCE, "deploy", "k8s")
IMAGE_ROOT = "/opt/retain"  # the checkout's place in the image (Dockerfile WORKDIR)


def tool(name):
    path = shutil.which(name)
    if not path:
        raise AssertionError(f"{name} not found: deploy/install-deps.sh installs it")
    return path


def render(overlay):
    r = subprocess.run([tool("kubectl"), "kustomize", os.path.join(K8S, overlay)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay}: {r.stderr}")
    return [o for o in yaml.safe_load_all(r.stdout) if o]


HELP = subprocess.run([SERVER, "--help"], capture_output=True, text=True, check=True).stdout
FLAGS = set(re.findall(r"^\s+(?:-\w,)?(--[a-z-]+)", HELP, re.M))
DOCKERFILE = Path(SOURCE, "Dockerfile").read_text()
HTTP_PORT = 8080  # the images' --http-listen port (the server has no default)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


class Rendered:
    OVERLAY = None

    @classmethod
    def setUpClass(cls):
        cls.objects = render(cls.OVERLAY)
        cls.by_kind = {}
        for o in cls.objects:
            cls.by_kind.setdefault(o["kind"], []).append(o)
        cls.deployment = cls.one("Deployment")
        cls.pod = cls.deployment["spec"]["template"]
        cls.container = cls.pod["spec"]["containers"][0]
        config = cls.one("ConfigMap")
        refs = [e["configMapRef"]["name"] for e in cls.container["envFrom"]]
        assert refs == [config["metadata"]["name"]], (refs, config["metadata"]["name"])  # hashed name followed
        data = config["data"]
        # The kubelet's $(VAR) expansion of args from the container's environment.
        cls.args = [re.sub(r"\$\((\w+)\)", lambda m: data[m.group(1)], a) for a in cls.container["args"]]
        cls.flags = dict(a[2:].split("=", 1) for a in cls.args)
        cls.ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}

    @classmethod
    def one(cls, kind, name=None):
        found = [o for o in cls.by_kind.get(kind, []) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{cls.OVERLAY}: {len(found)} {kind} {name or ''}"
        return found[0]

    def test_objects(self):
        kinds = sorted(o["kind"] for o in self.objects)
        self.assertEqual(kinds, ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace",
                                 "PodDisruptionBudget", "PodMonitor", "Service", "Service", "Service"])
        for o in self.objects:
            if o["kind"] != "Namespace":
                self.assertEqual(o["metadata"].get("namespace"), "retain", o["metadata"]["name"])

    def test_flags_exist_and_ports_agree(self):
        self.assertFalse([a for a in self.args if "$(" in a or not a.startswith("--")], self.args)
        self.assertFalse(set("--" + f for f in self.flags) - FLAGS, "flags not in retain-server --help")
        grpc_default = re.search(r"--listen HOST:PORT=[\d.]+:(\d+)", HELP).group(1)
        metrics_default = re.search(r"--metrics-listen HOST:PORT=[\d.]+:(\d+)", HELP).group(1)
        self.assertEqual(self.flags["listen"], f"0.0.0.0:{grpc_default}")
        self.assertEqual(self.flags["metrics-listen"], f"0.0.0.0:{metrics_default}")
        self.assertEqual(self.flags["http-listen"], f"0.0.0.0:{HTTP_PORT}")
        self.assertEqual(self.ports, {"grpc": int(grpc_default), "metrics": int(metrics_default), "http": HTTP_PORT})
        self.assertIn(f"EXPOSE {grpc_default} {metrics_default} {HTTP_PORT}", DOCKERFILE)
        self.assertEqual({p["name"] for p in self.one("Service", "retain")["spec"]["ports"]}, {"grpc", "http"})
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(self.container[probe]["grpc"]["port"], self.ports["grpc"], probe)
        labels = self.pod["metadata"]["labels"]
        for service in self.by_kind["Service"]:
            self.assertEqual(service["spec"]["selector"], labels)
            for p in service["spec"]["ports"]:
                self.assertEqual(self.ports[p["targetPort"]], p["port"], service["metadata"]["name"])
        self.assertEqual(self.one("Service", "retain-metrics")["spec"]["ports"][0]["targetPort"], "metrics")
        self.assertEqual(self.one("Service", "retain-pods")["spec"]["clusterIP"], "None")
        annotations = self.pod["metadata"]["annotations"]
        self.assertEqual(int(annotations["prometheus.io/port"]), self.ports["metrics"])
        endpoint = self.one("PodMonitor")["spec"]["podMetricsEndpoints"][0]
        self.assertEqual((endpoint["port"], endpoint["path"]), ("metrics", annotations["prometheus.io/path"]))
        self.assertEqual(self.one("PodMonitor")["spec"]["selector"]["matchLabels"], labels)
        self.assertEqual(self.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
        target = self.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        self.assertEqual((target["kind"], target["name"]), ("Deployment", self.deployment["metadata"]["name"]))

    def test_drain_and_security(self):
        drain = int(self.flags["drain-timeout"])
        self.assertGreater(self.pod["spec"]["terminationGracePeriodSeconds"], drain)
        live = self.container["livenessProbe"]
        self.assertGreater(live["periodSeconds"] * live["failureThreshold"], drain)  # a drain is not a restart
        pod_security, security = self.pod["spec"]["securityContext"], self.container["securityContext"]
        self.assertTrue(pod_security["runAsNonRoot"])
        self.assertIn(f"USER {pod_security['runAsUser']}:{pod_security['runAsGroup']}", DOCKERFILE)
        self.assertTrue(security["readOnlyRootFilesystem"])
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertEqual(security["capabilities"]["drop"], ["ALL"])
        for side in ("requests", "limits"):
            self.assertEqual({"cpu", "memory"} - set(self.container["resources"][side]), set(), side)

    def test_real_server_with_these_arguments(self):
        # Listen on free loopback ports (ServerProcess adds them) and find the image's model in the checkout.
        args = [a.replace(IMAGE_ROOT, SOURCE) for a in self.args if not a.startswith(("--listen=", "--metrics-listen=", "--http-listen="))]
        args.append("--http-listen=127.0.0.1:0")
        self.assertTrue(os.path.isdir(self.flags["model"].split("=", 1)[1].replace(IMAGE_ROOT, SOURCE)))
        with ServerProcess(args) as server:
            log = server.log()
            self.assertIn(f"models: {self.flags['model'].split('=')[0]} (default)", log)
            self.assertIn(f"max-batch {self.flags['max-batch']}", log)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                service = self.container[probe]["grpc"].get("service", "")
                r = subprocess.run([CLI, "--server", server.address, "health", "--service", service],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), f"{probe}: {r.stderr}")
            r = subprocess.run([CLI, "--server", server.address, "health", "--service", "no.such.Service"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 10 + 5, r.stderr)  # NOT_FOUND
            metrics_port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log).group(1)
            path = self.one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["path"]
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{path}", timeout=30) as response:
                metrics = response.read().decode()
            served = set(re.findall(r"^([a-z_:]+)[{ ]", metrics, re.M))
            hpa_metrics = [m["pods"]["metric"]["name"] for m in self.one("HorizontalPodAutoscaler")["spec"]["metrics"]]
            self.assertTrue(hpa_metrics)
            self.assertFalse(set(hpa_metrics) - served, f"HPA metrics not on /metrics: {hpa_metrics}")
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health", timeout=30) as response:
                self.assertEqual(response.status, 200)
            server.stop_and_check()


class Base(Rendered, unittest.TestCase):
    OVERLAY = "base"

    def test_image_and_no_gpu(self):
        self.assertEqual(self.container["image"], "retain:latest")
        self.assertNotIn("nvidia.com/gpu", json.dumps(self.container["resources"]))


class Cuda(Rendered, unittest.TestCase):
    OVERLAY = "cuda"

    def test_image_and_gpu(self):
        self.assertEqual(self.container["image"], "retain:cuda")
        for side in ("requests", "limits"):
            self.assertEqual(self.container["resources"][side]["nvidia.com/gpu"], 1, side)
        self.assertEqual(self.pod["spec"]["nodeSelector"], {"nvidia.com/gpu.present": "true"})
        # The overlay keeps the base's arguments; only the ConfigMap's values change.
        base = [o for o in render("base") if o["kind"] == "Deployment"][0]
        self.assertEqual(self.container["args"], base["spec"]["template"]["spec"]["containers"][0]["args"])
        self.assertEqual(self.flags["backend"], "cpu")  # the only backend engine/ has (Dockerfile.cuda)


class Lint(unittest.TestCase):
    def test_yamllint(self):
        r = subprocess.run([tool("yamllint"), "-s", "-c", os.path.join(K8S, ".yamllint"), K8S],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
