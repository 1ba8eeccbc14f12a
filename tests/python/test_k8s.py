"""deploy/k8s held to the real server (ctest K8sManifests): `kubectl kustomize` renders the base and
the cuda, redis and cuda-redis overlays offline, `yamllint` passes, and every port, probe, flag and
metric name in the rendered objects agrees with `retain-server --help` and with a real server
started on 127.0.0.1 with the Deployment's own arguments (the ConfigMap's and the downward API's
$(VARS) expanded as the kubelet does). The redis overlays' Redis runs as a real redis-server with
the StatefulSet's own arguments and probes, its password from a stand-in for the user's Secret
(retain's copy a file where the Secret's volume puts it), and a session written through it by the
rendered retain arguments outlives that Redis's restart."""

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import unittest
import urllib.request
from pathlib import Path

import yaml

from retain_testing import RedisServer, ServerProcess, env_path, wait_until

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
# What the downward API gives a pod (fieldRef), for the kubelet's $(VAR) expansion: a Deployment pod's name.
POD_FIELDS = {"metadata.name": "retain-7d4b9c8f6-x2k7q"}
# The Secrets the user creates (deploy/k8s/README.md, "The password"), with a fresh test password as
# `openssl rand -hex 32` makes one.
SECRETS = {"retain-redis-auth": {"password": secrets.token_hex(32)}}
RETAIN_SERVICES = {"retain", "retain-pods", "retain-metrics"}
BASE_KINDS = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "PodDisruptionBudget", "PodMonitor",
              "Service", "Service", "Service"]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def kubelet_environment(container, config=None):
    """The container's environment as the kubelet builds it: envFrom's ConfigMap, then env (literal
    values, the downward API's fields and Secrets' keys)."""
    environment = dict(config["data"]) if config else {}
    for e in container.get("env", []):
        if "value" in e:
            environment[e["name"]] = e["value"]
        elif "fieldRef" in e["valueFrom"]:
            environment[e["name"]] = POD_FIELDS[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["key"] in SECRETS.get(ref["name"], {}), f"{e['name']}: no Secret {ref['name']} key {ref['key']}"
            environment[e["name"]] = SECRETS[ref["name"]][ref["key"]]
    return environment


def kubelet_expand(args, environment):
    """The kubelet's $(VAR) expansion of a container's args (an unknown VAR stays as written)."""
    return [re.sub(r"\$\((\w+)\)", lambda m: environment.get(m.group(1), m.group(0)), a) for a in args]


def secret_files(pod, container):
    """{path in `container`: (Secret, key)} for every file of the Secret volumes it mounts (a
    volume's items, or each of the Secret's keys as a file of its name)."""
    volumes = {v["name"]: v["secret"] for v in pod["spec"].get("volumes", []) if "secret" in v}
    files = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"])
        if secret:
            items = secret.get("items") or [{"key": k, "path": k} for k in SECRETS[secret["secretName"]]]
            for item in items:
                files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def health(server, service):
    """`retain health --service SERVICE`: (exit code, stdout, stderr)."""
    r = subprocess.run([CLI, "--server", server.address, "health", "--service", service],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


class Rendered:
    OVERLAY = None
    KINDS = BASE_KINDS
    SERVICES = RETAIN_SERVICES

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
        cls.environment = kubelet_environment(cls.container, config)
        # The kubelet's $(VAR) expansion of args from the container's environment.
        cls.args = kubelet_expand(cls.container["args"], cls.environment)
        cls.flags = dict(a[2:].split("=", 1) for a in cls.args)
        cls.ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}

    @classmethod
    def one(cls, kind, name=None):
        found = [o for o in cls.by_kind.get(kind, []) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{cls.OVERLAY}: {len(found)} {kind} {name or ''}"
        return found[0]

    def test_objects(self):
        kinds = sorted(o["kind"] for o in self.objects)
        self.assertEqual(kinds, sorted(self.KINDS))
        self.assertEqual({o["metadata"]["name"] for o in self.by_kind["Service"]}, self.SERVICES)
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
        for service in (self.one("Service", name) for name in RETAIN_SERVICES):
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

    @classmethod
    def local_args(cls, args):
        """`args` for a server on 127.0.0.1: free loopback ports (ServerProcess adds them) and the
        image's model found in the checkout."""
        args = [a.replace(IMAGE_ROOT, SOURCE) for a in args if not a.startswith(("--listen=", "--metrics-listen=", "--http-listen="))]
        return args + ["--http-listen=127.0.0.1:0"]

    def assert_probes_serving(self, server):
        """Each gRPC probe's health service answers SERVING (what the kubelet's probe asks)."""
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            rc, out, err = health(server, self.container[probe]["grpc"].get("service", ""))
            self.assertEqual((rc, out), (0, "SERVING\n"), f"{probe}: {err}")

    def test_real_server_with_these_arguments(self):
        args = self.local_args(self.args)
        self.assertTrue(os.path.isdir(self.flags["model"].split("=", 1)[1].replace(IMAGE_ROOT, SOURCE)))
        with ServerProcess(args) as server:
            log = server.log()
            self.assertIn(f"models: {self.flags['model'].split('=')[0]} (default)", log)
            self.assertIn(f"max-batch {self.flags['max-batch']}", log)
            self.assert_probes_serving(server)
            self.assertEqual(health(server, "no.such.Service")[0], 10 + 5)  # NOT_FOUND
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


REDIS_KINDS = BASE_KINDS + ["NetworkPolicy", "Service", "Service", "StatefulSet"]
REDIS_SERVICES = RETAIN_SERVICES | {"retain-redis", "retain-redis-pods"}


def redis_options(args):
    """redis-server's command line as {option: value} (every option takes one value here)."""
    assert args[0] == "redis-server" and len(args) % 2 == 1, args
    return {args[i][2:]: args[i + 1] for i in range(1, len(args), 2)}


def memory_bytes(quantity):
    """A Kubernetes memory quantity or a Redis size (1gb, 2Gi) in bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|kb|mb|gb)?", quantity)
    return int(m.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
                              "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}[m.group(2)]


def cli(server, *args, timeout=60):
    r = subprocess.run([CLI, "--server", server.address, *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"retain {' '.join(args)}: exit {r.returncode}: {r.stderr}\n{server.log()}")
    return r.stdout


def greedy_turn(server, session, prompt):
    return cli(server, "generate", "--session", session, "--temperature", "0", "--max-tokens", "12",
               "--ignore-eos", prompt)


class RedisRendered(Rendered):
    """An overlay whose retain replicas share a Redis of the overlay's own (redis/store). A real
    redis-server with the StatefulSet's arguments, its $(VARS) expanded from the container's
    environment (the password from SECRETS), serves the class's real-server test."""
    KINDS = REDIS_KINDS
    SERVICES = REDIS_SERVICES

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.statefulset = cls.one("StatefulSet")
        cls.redis_pod = cls.statefulset["spec"]["template"]
        cls.redis = cls.redis_pod["spec"]["containers"][0]
        cls.redis_environment = kubelet_environment(cls.redis)
        cls.options = redis_options(kubelet_expand(cls.redis["args"], cls.redis_environment))
        cls.volumes = tempfile.mkdtemp(prefix="retain-k8s-secrets-")
        cls.local_redis = cls.start_redis()

    @classmethod
    def tearDownClass(cls):
        cls.local_redis.stop()
        shutil.rmtree(cls.volumes, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def start_redis(cls, password=None, **kwargs):
        """A redis-server with the StatefulSet's options but --dir (RedisServer gives a directory of
        its own; test_store_objects holds --dir to the volume's mount), and its --requirepass (as
        expanded from the Secret) unless `password` replaces it; RedisServer then sends AUTH."""
        args = [a for k, v in cls.options.items() if k not in ("dir", "requirepass") for a in ("--" + k, v)]
        return RedisServer(args, password=password or cls.options["requirepass"], **kwargs)

    @classmethod
    def secret_volume(cls, values=None):
        """The Deployment's Secret volumes as the kubelet fills them, in a directory here: {path in the
        container: the local file holding that Secret key's value (from SECRETS, or `values`,
        {(Secret, key): value})}."""
        root = tempfile.mkdtemp(dir=cls.volumes)
        local = {}
        for path, ref in secret_files(cls.pod, cls.container).items():
            local[path] = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(local[path]), exist_ok=True)
            with open(local[path], "w") as f:
                f.write((values or {}).get(ref, SECRETS[ref[0]][ref[1]]))
        return local

    @classmethod
    def local_args(cls, args, redis=None, secret_values=None):
        """As Rendered's, with --redis rewritten from the Service's name to a redis-server on 127.0.0.1
        and --redis-password-file to where secret_volume() put that path's file (a path outside the
        Secret's volume stays as it is, and retain-server refuses to start without it)."""
        port = (redis or cls.local_redis).port
        files = cls.secret_volume(secret_values)
        local = []
        for a in super().local_args(args):
            flag, _, value = a.partition("=")
            if flag == "--redis":
                a = f"--redis=127.0.0.1:{port}"
            elif flag == "--redis-password-file":
                a = f"{flag}={files.get(value, value)}"
            local.append(a)
        return local

    def test_retain_names_the_redis_service(self):
        # The address is the ClusterIP Service's name, resolved in the pods' own namespace (the
        # Service's), and its port; the Service reaches the StatefulSet's pods on the redis port.
        host, port = self.flags["redis"].rsplit(":", 1)
        service = self.one("Service", host)
        self.assertNotEqual(service["spec"].get("clusterIP"), "None")
        self.assertEqual(service["metadata"]["namespace"], self.deployment["metadata"]["namespace"])
        self.assertEqual([p["port"] for p in service["spec"]["ports"]], [int(port)])
        self.assertEqual(service["spec"]["selector"], self.statefulset["spec"]["selector"]["matchLabels"])
        redis_ports = {p["name"]: p["containerPort"] for p in self.redis["ports"]}
        self.assertEqual(redis_ports[service["spec"]["ports"][0]["targetPort"]], int(port))
        self.assertEqual(int(self.options["port"]) if "port" in self.options else 6379, int(port))
        # Each replica's leases carry its pod's name, from the downward API.
        self.assertEqual(self.flags["replica-id"], POD_FIELDS["metadata.name"])
        self.assertIn("--replica-id=$(POD_NAME)", self.container["args"])
        self.assertIn({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                      self.container["env"])
        # retain's Services must not take the Redis pod, nor Redis's a retain pod.
        redis_labels, retain_labels = self.redis_pod["metadata"]["labels"], self.pod["metadata"]["labels"]
        for name in RETAIN_SERVICES:
            selector = self.one("Service", name)["spec"]["selector"]
            self.assertFalse(selector.items() <= redis_labels.items(), name)
        self.assertFalse(service["spec"]["selector"].items() <= retain_labels.items())

    def test_store_objects(self):
        spec = self.statefulset["spec"]
        self.assertEqual(spec["replicas"], 1)
        headless = self.one("Service", spec["serviceName"])
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        self.assertEqual(headless["spec"]["selector"], spec["selector"]["matchLabels"])
        self.assertLessEqual(spec["selector"]["matchLabels"].items(), self.redis_pod["metadata"]["labels"].items())
        self.assertEqual(self.redis["image"], "redis:7")
        # Durability: the append-only file, fsynced every second, on the claim's volume.
        self.assertEqual((self.options["appendonly"], self.options["appendfsync"]), ("yes", "everysec"))
        self.assertEqual(self.options["maxmemory-policy"], "noeviction")  # never drop a session or a lease
        claims = [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]]
        mounts = {m["name"]: m["mountPath"] for m in self.redis["volumeMounts"]}
        self.assertEqual(list(mounts), claims)
        self.assertEqual(mounts[claims[0]], self.options["dir"])
        # The AOF rewrite forks: the limit holds maxmemory twice over (copy-on-write).
        limit = memory_bytes(self.redis["resources"]["limits"]["memory"])
        self.assertLessEqual(2 * memory_bytes(self.options["maxmemory"]), limit)
        for side in ("requests", "limits"):
            self.assertEqual({"cpu", "memory"} - set(self.redis["resources"][side]), set(), side)
        pod_security, security = self.redis_pod["spec"]["securityContext"], self.redis["securityContext"]
        self.assertTrue(pod_security["runAsNonRoot"])
        self.assertNotEqual(pod_security["runAsUser"], 0)
        self.assertEqual(pod_security["fsGroup"], pod_security["runAsGroup"])  # the volume is writable
        self.assertTrue(security["readOnlyRootFilesystem"])
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertEqual(security["capabilities"]["drop"], ["ALL"])
        # Only retain's pods reach it, on the port the Service uses.
        policy = self.one("NetworkPolicy")["spec"]
        self.assertEqual(policy["podSelector"]["matchLabels"], spec["selector"]["matchLabels"])
        self.assertEqual(policy["ingress"][0]["from"], [{"podSelector": {"matchLabels": self.pod["metadata"]["labels"]}}])
        self.assertEqual([p["port"] for p in policy["ingress"][0]["ports"]], [p["name"] for p in self.redis["ports"]])

    def test_password_from_the_secret(self):
        # One Secret key, created by the user (none is rendered), is both retain's password file
        # and Redis's --requirepass; the pod specs only name it.
        self.assertNotIn("Secret", self.by_kind)
        ref = ("retain-redis-auth", "password")
        # retain: --redis-password-file is exactly the file that key becomes in the Secret's
        # volume (its mount path + the item's path), mounted read-only; a literal path, no $(VAR).
        files = secret_files(self.pod, self.container)
        path = self.flags["redis-password-file"]
        self.assertIn(f"--redis-password-file={path}", self.container["args"])
        self.assertEqual(files, {path: ref})
        volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        mounts = [m for m in self.container["volumeMounts"] if "secret" in volumes[m["name"]]]
        self.assertEqual([m.get("readOnly") for m in mounts], [True])
        self.assertNotIn("redis-user", self.flags)  # the default user: requirepass
        # Redis: --requirepass is $(VAR) of a variable from that key, and the probes' redis-cli
        # reads its password from REDISCLI_AUTH, from that key too.
        refs = {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in self.redis.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        requirepass = self.redis["args"][self.redis["args"].index("--requirepass") + 1]
        variable = re.fullmatch(r"\$\((\w+)\)", requirepass).group(1)
        self.assertEqual(set(refs.values()), {ref})
        self.assertLessEqual({variable, "REDISCLI_AUTH"}, set(refs))
        self.assertEqual(self.options["requirepass"], SECRETS[ref[0]][ref[1]])
        for probe in ("readinessProbe", "livenessProbe"):
            command = " ".join(self.redis[probe]["exec"]["command"])
            self.assertNotRegex(command, r"(^| )(-a|--pass|--user|--askpass)( |$)", probe)  # nothing on a command line
        # With a password, protected mode only matters if the Secret's value is empty: then Redis
        # serves loopback only (fails closed) rather than everyone.
        self.assertEqual(self.options["protected-mode"], "yes")
        self.assertFalse([a for a in kubelet_expand(self.redis["args"], self.redis_environment) if "$(" in a])

    def probe(self, name, redis, environment=None):
        """The probe's exec command run here against `redis` (its -p rewritten to that port), with the
        container's environment (as the kubelet's exec probe has it) or `environment`."""
        port = str(self.redis["ports"][0]["containerPort"])
        command = self.redis[name]["exec"]["command"]
        self.assertIn(f"-p {port}", " ".join(command), name)
        local = [c.replace(f"-p {port}", f"-p {redis.port}") for c in command]
        local = [str(redis.port) if c == port and local[i - 1] == "-p" else c for i, c in enumerate(local)]
        env = {"PATH": os.environ["PATH"], **(self.redis_environment if environment is None else environment)}
        return subprocess.run(local, capture_output=True, text=True, timeout=30, env=env).returncode

    def test_probes_on_a_real_redis(self):
        # The Secret's password on both sides: ready and alive.
        self.assertEqual(self.probe("readinessProbe", self.local_redis), 0)
        self.assertEqual(self.probe("livenessProbe", self.local_redis), 0)
        # A Redis that answers with an error (as it does LOADING its AOF at start; here NOAUTH) is
        # alive but not ready: redis-cli exits 0 either way, so readiness must read the reply.
        # NOAUTH: the probe without the container's REDISCLI_AUTH, and a Redis whose password is
        # not the Secret's.
        self.assertNotEqual(self.probe("readinessProbe", self.local_redis, environment={}), 0)
        self.assertEqual(self.probe("livenessProbe", self.local_redis, environment={}), 0)
        locked = self.start_redis(password=secrets.token_hex(32))
        try:
            self.assertNotEqual(self.probe("readinessProbe", locked), 0)
            self.assertEqual(self.probe("livenessProbe", locked), 0)
        finally:
            locked.stop()
        gone = self.start_redis()
        gone.stop()
        self.assertNotEqual(self.probe("readinessProbe", gone), 0)
        self.assertNotEqual(self.probe("livenessProbe", gone), 0)

    def test_pods_stay_ready_while_redis_is_away(self):
        # Redis restarting (or not up yet when retain's pods start) must not take retain's pods out
        # of the Services: the probes' services stay SERVING; only retain.tier.redis says it.
        gone = self.start_redis()
        gone.stop()
        with ServerProcess(self.local_args(self.args, gone)) as server:
            self.assert_probes_serving(server)
            self.assertEqual(health(server, "retain.tier.redis")[:2], (3, "NOT_SERVING\n"))
            server.stop_and_check()

    def test_wrong_password_takes_only_the_tier_down(self):
        # The rendered args with the Secret's password: the tier comes up. With another password in
        # the file (a Secret changed while Redis still runs with the old one): Redis refuses AUTH,
        # retain.tier.redis is NOT_SERVING and the log says so without the password, while the
        # probes' services stay SERVING (the pods stay in the Services).
        with ServerProcess(self.local_args(self.args)) as server:
            self.assertTrue(wait_until(lambda: health(server, "retain.tier.redis")[:2] == (0, "SERVING\n"), timeout=20),
                            server.log())
            server.stop_and_check()
        wrong = secrets.token_hex(32)
        args = self.local_args(self.args, secret_values={("retain-redis-auth", "password"): wrong})
        with ServerProcess(args) as server:
            self.assertTrue(wait_until(lambda: "refused AUTH" in server.log(), timeout=20), server.log())
            self.assertEqual(health(server, "retain.tier.redis")[:2], (3, "NOT_SERVING\n"))
            self.assert_probes_serving(server)
            self.assertNotIn(wrong, server.log())
            server.stop_and_check()


class RedisOverlay(RedisRendered, unittest.TestCase):
    OVERLAY = "redis"

    def test_session_written_through_and_kept_over_a_redis_restart(self):
        # The rendered retain arguments on one pod, the StatefulSet's Redis (its own options, its
        # own directory), a turn, then Redis stopped as the kubelet stops it and started again on
        # the same volume: another replica continues the session as one that never moved.
        directory = tempfile.mkdtemp(prefix="retain-k8s-redis-")
        redis = self.start_redis(directory=directory)
        a = b = None
        try:
            a = ServerProcess(self.local_args(self.args, redis))
            # The default consistency, and the pod's name as the replica's.
            self.assertIn(f"redis tier 127.0.0.1:{redis.port} (write-through, replica {POD_FIELDS['metadata.name']})",
                          a.log())
            sid = cli(a, "session", "create", "--prefix", "In the beginning").strip()
            first = greedy_turn(a, sid, "")
            position = json.loads(cli(a, "session", "get", sid, "--json"))["position"]
            self.assertEqual(redis.command("HGET", f"retain:session:{sid}", "position"), str(position).encode())
            self.assertTrue(os.listdir(os.path.join(directory, redis.command("CONFIG", "GET", "appenddirname")[1].decode())))
            # A running request's lease names the pod (--replica-id=$(POD_NAME)).
            busy = cli(a, "session", "create").strip()
            long = subprocess.Popen([CLI, "--server", a.address, "generate", "--session", busy, "--max-tokens", "8000",
                                     "--ignore-eos", "x"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.assertTrue(wait_until(lambda: redis.command("GET", f"retain:lease:{busy}") is not None, timeout=30))
                self.assertEqual(redis.command("GET", f"retain:lease:{busy}"), POD_FIELDS["metadata.name"].encode())
            finally:
                long.kill()
                long.wait()
            a.stop_and_check()
            self.assertEqual(redis.stop(graceful=True), 0)
            redis = self.start_redis(port=redis.port, directory=directory)
            other = [arg.replace(POD_FIELDS["metadata.name"], "retain-7d4b9c8f6-m9p3z") for arg in self.args]
            b = ServerProcess(self.local_args(other, redis))
            self.assertEqual(json.loads(cli(b, "session", "get", sid, "--json"))["position"], position)
            second = greedy_turn(b, sid, " and")
            b.stop_and_check()
        finally:
            for server in (a, b):
                if server:
                    server.stop()
            redis.stop()
            shutil.rmtree(directory, ignore_errors=True)
        # The same arguments without Redis: the session never leaves this server.
        alone = [arg for arg in self.local_args(self.args) if not arg.startswith(("--redis", "--replica-id"))]
        with ServerProcess(alone) as never_moved:
            ref = cli(never_moved, "session", "create", "--prefix", "In the beginning").strip()
            self.assertEqual([first, second], [greedy_turn(never_moved, ref, ""), greedy_turn(never_moved, ref, " and")])


def redis_additions(parent, child):
    """What `child` adds to `parent`'s Deployment (args, env and volume mounts appended to the
    container, volumes to the pod, ConfigMap values) and the Deployments with those taken away (so
    equal when the child changes nothing else)."""
    def parts(objects):
        deployment = json.loads(json.dumps([o for o in objects if o["kind"] == "Deployment"][0]))
        pod = deployment["spec"]["template"]["spec"]
        del pod["containers"][0]["envFrom"]  # the ConfigMap's hashed name
        lists = {"args": pod["containers"][0], "env": pod["containers"][0],
                 "volumeMounts": pod["containers"][0], "volumes": pod}
        return deployment, lists, [o for o in objects if o["kind"] == "ConfigMap"][0]["data"]
    pd, plists, pconfig = parts(parent)
    cd, clists, cconfig = parts(child)
    added = {"config": {k: v for k, v in cconfig.items() if pconfig.get(k) != v}}
    for name, holder in clists.items():
        mine, theirs = holder.pop(name, []), plists[name].get(name, [])
        assert mine[:len(theirs)] == theirs, f"the child appends to the parent's {name}"
        added[name] = mine[len(theirs):]
        if theirs:
            holder[name] = theirs
    return added, pd, cd


class CudaRedis(RedisRendered, unittest.TestCase):
    OVERLAY = "cuda-redis"

    def test_same_redis_as_the_redis_overlay(self):
        # cuda-redis copies redis's Deployment patch and values (kustomize v2 cannot share them):
        # it must add to cuda exactly what redis adds to base, and render the same Redis objects.
        redis_added, base_deployment, redis_deployment = redis_additions(render("base"), render("redis"))
        cuda_added, cuda_deployment, cuda_redis_deployment = redis_additions(render("cuda"), self.objects)
        self.assertEqual(cuda_added, redis_added)
        self.assertTrue(all(redis_added.values()), redis_added)
        self.assertEqual(redis_deployment, base_deployment)  # nothing else changed
        self.assertEqual(cuda_redis_deployment, cuda_deployment)
        store = {"StatefulSet", "NetworkPolicy"}
        mine = [o for o in self.objects if o["kind"] in store or o["metadata"]["name"].startswith("retain-redis")]
        theirs = [o for o in render("redis") if o["kind"] in store or o["metadata"]["name"].startswith("retain-redis")]
        self.assertEqual(mine, theirs)
        self.assertEqual(len(mine), 4)


class Lint(unittest.TestCase):
    def test_yamllint(self):
        r = subprocess.run([tool("yamllint"), "-s", "-c", os.path.join(K8S, ".yamllint"), K8S],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
