"""deploy/prometheus and deploy/grafana, checked for real (issue 14).

DashboardFiles (ctest GrafanaDashboard): the dashboard and Grafana provisioning files, read as
Grafana reads them (Grafana itself is not packaged in Debian): every panel on the ${datasource}
variable, filtered by the model variable, the recorded series it draws defined in rules.yml.

PrometheusEndToEnd (ctest PrometheusEndToEnd): a real retain-server (4 state slots) and Debian's
prometheus, both on 127.0.0.1 on free ports, prometheus running the shipped prometheus.yml with only
the intervals shortened to 1s and the target set to the server's metrics address, and the shipped
rules.yml. A known amount of work goes through the real RPCs; then every expression of the dashboard
and of the rules is asked of prometheus's HTTP API: each parses and returns data (alert expressions:
exactly the two this work should trigger), every rule evaluates without error, the raw counters equal
the work done, and the alerts this work should trigger are pending or firing.

Run by ctest with Debian's /usr/bin/python3: PYTHONPATH = the generated stubs and this folder,
$RETAIN_SERVER_BIN, $RETAIN_SOURCE_DIR, $RETAIN_PROMETHEUS_BIN.
"""
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import yaml

import retain_testing as rt

SOURCE = os.environ.get("RETAIN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROMETHEUS_DIR = os.path.join(SOURCE, "deploy", "prometheus")
GRAFANA_DIR = os.path.join(SOURCE, "deploy", "grafana")
MODEL = "kjv"

# Grafana's variables as the test substitutes them: one model selected, 1m rate windows.
GRAFANA_VARIABLES = {"$model": MODEL, "$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def load_yaml(*parts):
    with open(os.path.join(*parts)) as f:
        return yaml.safe_load(f)


def load_dashboard():
    with open(os.path.join(GRAFANA_DIR, "retain.json")) as f:
        return json.load(f)


def dashboard_panels(dashboard):
    """Every panel, rows' children included (rows themselves left out)."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs(dashboard):
    """[(panel title, expression as Grafana sends it with GRAFANA_VARIABLES)]."""
    out = []
    for p in dashboard_panels(dashboard):
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((p["title"], expr))
    return out


def rules():
    """Every rule of rules.yml, with its group's name."""
    out = []
    for group in load_yaml(PROMETHEUS_DIR, "rules.yml")["groups"]:
        for rule in group["rules"]:
            out.append(dict(rule, group=group["name"]))
    return out


class DashboardFiles(unittest.TestCase):
    def setUp(self):
        self.dashboard = load_dashboard()
        self.panels = dashboard_panels(self.dashboard)
        self.variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}

    def test_variables(self):
        ds = self.variables["datasource"]
        self.assertEqual((ds["type"], ds["query"]), ("datasource", "prometheus"))
        model = self.variables["model"]
        self.assertEqual(model["type"], "query")
        self.assertTrue(model["multi"] and model["includeAll"])
        self.assertEqual(model["allValue"], ".*")
        self.assertEqual(model["datasource"]["uid"], "${datasource}")
        self.assertEqual(model["query"]["query"], "label_values(retain_requests_finished_total, model)")

    def test_panels_use_the_variables(self):
        ids = [p["id"] for p in self.dashboard["panels"]] + [p["id"] for p in self.panels
                                                             if p not in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in self.panels:
            with self.subTest(panel=p["title"]):
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                self.assertTrue(p["targets"])
                refs = [t["refId"] for t in p["targets"]]
                self.assertEqual(len(refs), len(set(refs)))
                for t in p["targets"]:
                    self.assertEqual(t["datasource"], p["datasource"])
                    if "up{" not in t["expr"]:
                        self.assertIn('model=~"$model"', t["expr"])

    def test_layout(self):
        """Every panel within Grafana's 24 columns, none overlapping another."""
        cells = {}
        for p in self.dashboard["panels"] + [p for p in self.panels if p not in self.dashboard["panels"]]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"{p['title']} overlaps {cells.get((x, y))}")
                    cells[(x, y)] = p["title"]

    def test_covers_what_the_issue_asks(self):
        exprs = " ".join(e for _, e in dashboard_exprs(self.dashboard))
        for metric in ["retain_generation_tokens", "retain_prompt_tokens", "retain_requests_finished",
                       "retain_time_to_first_token_seconds:p50", "retain_time_to_first_token_seconds:p99",
                       "retain_inter_token_latency_seconds:p50", "retain_inter_token_latency_seconds:p99",
                       "retain_decode_batch_size", "retain_requests_waiting", "retain_requests_running",
                       "retain_sessions", "retain_state_pool", "retain_evictions", "retain_request_errors",
                       "retain_prefix_cache_hits:ratio", "retain_prefix_cache_hit_tokens", "retain_prefix_cache_bytes",
                       "retain_prefix_cache_evictions", "retain_checkpoint_bytes", "retain_checkpoints_dropped",
                       "retain_checkpoints{"]:
            self.assertIn(metric, exprs)
        self.assertTrue(any("code" in t["legendFormat"] for p in self.panels for t in p["targets"]),
                        "errors are drawn by code")

    def test_recorded_series_are_defined(self):
        recorded = {r["record"] for r in rules() if "record" in r}
        for title, expr in dashboard_exprs(self.dashboard):
            for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", expr):
                self.assertIn(name, recorded, f"panel {title!r}")

    def test_provisioning(self):
        provider = load_yaml(GRAFANA_DIR, "provisioning", "dashboards", "retain.yaml")
        self.assertEqual(provider["apiVersion"], 1)
        (p,) = provider["providers"]
        self.assertEqual(p["type"], "file")
        self.assertTrue(os.path.isabs(p["options"]["path"]))
        datasources = load_yaml(GRAFANA_DIR, "provisioning", "datasources", "prometheus.yaml")
        self.assertEqual(datasources["apiVersion"], 1)
        (d,) = datasources["datasources"]
        self.assertEqual((d["type"], d["access"]), ("prometheus", "proxy"))


class Prometheus:
    """Debian's prometheus on 127.0.0.1 with a temporary storage folder."""

    def __init__(self, config_path, workdir, timeout=30.0):
        binary = os.environ.get("RETAIN_PROMETHEUS_BIN") or shutil.which("prometheus")
        if not binary:
            raise RuntimeError("prometheus not found; deploy/install-deps.sh installs it")
        self.log_path = os.path.join(workdir, "prometheus.log")
        for attempt in range(3):  # the free port may be taken again before prometheus binds it
            self.port = rt.free_port()
            self.log = open(self.log_path, "w")
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir}/data",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
            end = time.monotonic() + timeout
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"prometheus did not become ready; its log:\n{self.log_text()}")

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def get(self, path, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400 for a query that does not parse: the body says why
            return json.load(e)

    def query(self, expr):
        """The instant query's result (a list of samples); AssertionError unless it succeeded."""
        answer = self.get("/api/v1/query", query=expr)
        if answer.get("status") != "success":
            raise AssertionError(f"query {expr!r}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def value(self, expr):
        """The single number an instant query returns."""
        data = self.query(expr)
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        result = data["result"]
        if len(result) != 1:
            raise AssertionError(f"query {expr!r}: {len(result)} series, one expected: {result}")
        return float(result[0]["value"][1])

    def wait(self, predicate, what, timeout=30.0, describe=None):
        """predicate()'s first true value, polled; AssertionError after `timeout` with the last
        value (or describe()'s, e.g. what is still missing) and prometheus's log."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                last = predicate()
                if last:
                    return last
            except AssertionError as e:
                last = e
            time.sleep(0.2)
        if describe is not None:
            last = describe()
        raise AssertionError(f"waited {timeout} s for {what}; last: {last}; prometheus log:\n{self.log_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@unittest.skipUnless(os.environ.get("RETAIN_SERVER_BIN"), "$RETAIN_SERVER_BIN not set (ctest sets it)")
class PrometheusEndToEnd(unittest.TestCase):
    SLOTS = 4
    # The last repeats the second with more: a prefix cache hit of the second's whole prompt.
    STATELESS = ["And God said", "In the beginning God created", "Amen.", "In the beginning God created the heaven"]
    STATELESS_TOKENS = 8
    SESSIONS = 5  # one more than SLOTS: the first is evicted for room
    PREFIX = "In the beginning"
    SESSION_PROMPT = " and the earth"
    SESSION_TOKENS = 6

    @classmethod
    def setUpClass(cls):
        import grpc  # only this class needs gRPC and the stubs
        from retain.v1 import retain_pb2, retain_pb2_grpc
        import retain_testing

        cls.grpc, cls.pb = grpc, retain_pb2
        cls.tmp = tempfile.TemporaryDirectory(prefix="retain-prometheus-")
        model_dir = os.path.join(SOURCE, "models", "rwkv7-kjv-byte")
        # First the server, to learn its state size (the start-up line: "N slots of B state bytes").
        probe = retain_testing.ServerProcess(["--model", f"{MODEL}={model_dir}", "--threads", "1"])
        cls.state_bytes = int(re.search(r"slots of (\d+) state bytes", probe.log()).group(1))
        probe.stop_and_check()
        probe.proc.stderr.close()
        cls.server = retain_testing.ServerProcess([
            "--model", f"{MODEL}={model_dir}", "--threads", "1",
            "--state-budget-bytes", str(cls.SLOTS * cls.state_bytes)])
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", cls.server.log())
        assert m, cls.server.log()
        cls.metrics_address = f"127.0.0.1:{m.group(1)}"
        assert f"{cls.SLOTS} slots of {cls.state_bytes} state bytes" in cls.server.log(), cls.server.log()

        # The shipped scrape config, with 1s intervals and this server as its one target.
        config = load_yaml(PROMETHEUS_DIR, "prometheus.yml")
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        (job,) = config["scrape_configs"]
        cls.job = job["job_name"]
        (targets,) = job["static_configs"]
        targets["targets"] = [cls.metrics_address]
        config["rule_files"] = [os.path.join(PROMETHEUS_DIR, f) for f in config["rule_files"]]
        config_path = os.path.join(cls.tmp.name, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        try:
            cls.prom = Prometheus(config_path, cls.tmp.name)
        except Exception:
            cls.server.stop()
            raise
        try:
            cls.channel = grpc.insecure_channel(cls.server.address)
            cls.stub = retain_pb2_grpc.RetainStub(cls.channel)
            # A scrape before any work, so every counter's rise is inside the rate windows.
            cls.prom.wait(lambda: cls.prom.query(f'up{{job="{cls.job}"}} == 1')["result"], "a first scrape")
            cls.drive()
            cls.work_done = time.time()
            # Then a scrape that began after the work ended: it saw all of it.
            cls.prom.wait(lambda: cls.prom.value(f'timestamp(up{{job="{cls.job}"}})') > cls.work_done + 0.05,
                          "a scrape after the work")
            # And the rules evaluated on it: every recorded series present (the error counter, new
            # at the work's one error, has a rate once a second sample of it is scraped).
            recorded = [r["record"] for r in rules() if "record" in r]
            cls.prom.wait(lambda: not [r for r in recorded if not cls.prom.query(r)["result"]] or None,
                          "every recorded series",
                          describe=lambda: [r for r in recorded if not cls.prom.query(r)["result"]])
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def drive(cls):
        """The work whose counts the metrics must show; each response checked on the way."""
        pb = cls.pb
        cls.usage = []

        def generate(prompt, tokens, session=""):
            req = pb.GenerateRequest(prompt_text=prompt, session_id=session)
            req.sampling.temperature = 0.0
            req.stopping.max_tokens = tokens
            req.stopping.ignore_eos = True
            finished, count = None, 0
            for r in cls.stub.Generate(req, timeout=60):
                if r.WhichOneof("event") == "token":
                    count += 1
                elif r.WhichOneof("event") == "finished":
                    finished = r.finished
            assert finished is not None and count == tokens, (finished, count)
            assert finished.usage.generated_tokens == tokens and finished.usage.prompt_tokens == len(prompt.encode())
            cls.usage.append(finished.usage)
            return finished

        for prompt in cls.STATELESS:
            generate(prompt, cls.STATELESS_TOKENS)
        assert cls.usage[-1].cached_tokens == len(cls.STATELESS[1].encode()), cls.usage[-1]
        # The one error: a bad sampling field, refused before the engine (INVALID_ARGUMENT).
        bad = pb.GenerateRequest(prompt_text="And God said")
        bad.sampling.top_p = 2.0
        try:
            list(cls.stub.Generate(bad, timeout=60))
            raise AssertionError("top_p 2 was accepted")
        except cls.grpc.RpcError as e:
            assert e.code() == cls.grpc.StatusCode.INVALID_ARGUMENT, e
        cls.session_ids = []
        for _ in range(cls.SESSIONS):
            s = cls.stub.CreateSession(pb.CreateSessionRequest(model=MODEL, prefix_text=cls.PREFIX), timeout=60)
            assert s.position == len(cls.PREFIX.encode()) and s.state_bytes == cls.state_bytes, s
            cls.session_ids.append(s.id)
        live = {s.id for s in cls.stub.ListSessions(pb.ListSessionsRequest(), timeout=60).sessions}
        # The least recently used (the first) made room for the last.
        assert live == set(cls.session_ids[1:]), (live, cls.session_ids)
        generate(cls.SESSION_PROMPT, cls.SESSION_TOKENS, session=cls.session_ids[-1])

    @classmethod
    def tearDownClass(cls):
        cls.prom.stop()
        cls.channel.close()
        cls.server.stop()
        cls.tmp.cleanup()

    # ---- the work, as prometheus saw it -------------------------------------------------------

    def test_target_is_the_server(self):
        (target,) = self.prom.get("/api/v1/targets")["data"]["activeTargets"]
        self.assertEqual(target["health"], "up", target)
        self.assertEqual(target["scrapeUrl"], f"http://{self.metrics_address}/metrics")
        self.assertEqual(target["labels"]["job"], "retain")

    def test_counters_equal_the_work(self):
        v = self.prom.value
        generates = len(self.STATELESS) + 1
        ended = generates + self.SESSIONS  # CreateSession's prefill counts as a finished request
        prompt = sum(len(p.encode()) for p in self.STATELESS) + self.SESSIONS * len(self.PREFIX.encode()) \
            + len(self.SESSION_PROMPT.encode())
        tokens = len(self.STATELESS) * self.STATELESS_TOKENS + self.SESSION_TOKENS
        sel = f'{{model="{MODEL}"}}'
        self.assertEqual(v(f"sum(retain_requests_finished_total{sel})"), ended)
        self.assertEqual(v(f'retain_requests_finished_total{{model="{MODEL}", reason="length"}}'), ended)
        self.assertEqual(v(f"sum(retain_prompt_tokens_total{sel})"), prompt)
        self.assertEqual(v(f"sum(retain_generation_tokens_total{sel})"), tokens)
        errors = self.prom.query("retain_request_errors_total")["result"]
        self.assertEqual([(e["metric"]["model"], e["metric"]["code"], float(e["value"][1])) for e in errors
                          if float(e["value"][1]) != 0], [(MODEL, "INVALID_ARGUMENT", 1.0)])
        # Every code's series exists at 0 before its first error, so rate() sees that error.
        self.assertEqual(sorted(e["metric"]["code"] for e in errors if e["metric"]["model"] == MODEL),
                         sorted(["CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                 "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                 "UNAUTHENTICATED"]))
        self.assertEqual(v(f'retain_evictions_total{{model="{MODEL}", reason="lru"}}'), 1)
        self.assertEqual(v(f'retain_evictions_total{{model="{MODEL}", reason="ttl"}}'), 0)
        # Histograms: one first token per Generate, tokens-1 gaps per stream, every request's end.
        self.assertEqual(v(f"retain_time_to_first_token_seconds_count{sel}"), generates)
        self.assertEqual(v(f"retain_inter_token_latency_seconds_count{sel}"), tokens - generates)
        self.assertEqual(v(f"retain_request_duration_seconds_count{sel}"), ended)
        self.assertEqual(v(f"retain_request_queue_seconds_count{sel}"), ended)
        steps = v(f"retain_step_duration_seconds_count{sel}")
        self.assertGreater(steps, 0)
        self.assertEqual(v(f"retain_decode_batch_size_count{sel}"), steps)
        # Gauges: the live sessions hold every slot; nothing runs or waits.
        self.assertEqual(v(f"sum(retain_sessions{sel})"), self.SESSIONS - 1)
        self.assertEqual(v(f"retain_state_pool_bytes_used{sel}"), self.SLOTS * self.state_bytes)
        self.assertEqual(v(f"retain_state_pool_bytes_capacity{sel}"), self.SLOTS * self.state_bytes)
        self.assertEqual(v(f"retain_requests_running{sel}"), 0)
        self.assertEqual(v(f"retain_requests_waiting{sel}"), 0)
        # Prefix cache: every fresh-state prompt (the stateless ones, CreateSession's prefixes) looked
        # it up. Generate's hits are what Finished.usage.cached_tokens reported; CreateSession leaves
        # its prefix's last token pending, so the first session cached its state after all but that
        # token, and each later session with the same prefix was served exactly that.
        generate_hits = [u.cached_tokens for u in self.usage if u.cached_tokens > 0]
        self.assertEqual(len(generate_hits), 1)
        session_hits = [len(self.PREFIX.encode()) - 1] * (self.SESSIONS - 1)
        hits = len(generate_hits) + len(session_hits)
        self.assertEqual(v(f"retain_prefix_cache_hits_total{sel}"), hits)
        self.assertEqual(v(f"retain_prefix_cache_misses_total{sel}"), len(self.STATELESS) + self.SESSIONS - hits)
        self.assertEqual(v(f"retain_prefix_cache_hit_tokens_total{sel}"), sum(generate_hits) + sum(session_hits))
        self.assertGreater(v(f"retain_prefix_cache_entries{sel}"), 0)
        self.assertGreater(v(f"retain_prefix_cache_bytes{sel}"), 0)
        # Checkpoints: the gauge counts what the live sessions say they hold.
        live = self.stub.ListSessions(self.pb.ListSessionsRequest(), timeout=60).sessions
        held = sum(len(s.checkpoint_positions) for s in live)
        self.assertGreater(held, 0)
        self.assertEqual(v(f"retain_checkpoints{sel}"), held)
        self.assertGreater(v(f"retain_checkpoint_bytes{sel}"), 0)

    # ---- every expression of the dashboard and the rules --------------------------------------

    def assert_data(self, what, expr):
        data = self.prom.query(expr)
        self.assertEqual(data["resultType"], "vector", f"{what}: {expr}")
        self.assertTrue(data["result"], f"{what}: {expr} returned no series")
        for sample in data["result"]:
            self.assertTrue(math.isfinite(float(sample["value"][1])), f"{what}: {expr}: {sample}")
            if "model" in sample["metric"]:
                self.assertEqual(sample["metric"]["model"], MODEL, f"{what}: {expr}")
        return data["result"]

    def test_every_dashboard_expression_returns_data(self):
        for title, expr in dashboard_exprs(load_dashboard()):
            with self.subTest(panel=title, expr=expr):
                self.assert_data(f"panel {title!r}", expr)

    def test_the_model_variable_lists_the_model(self):
        variable = next(v for v in load_dashboard()["templating"]["list"] if v["name"] == "model")
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()
        answer = self.prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        self.assertEqual(answer["data"], [MODEL])

    def test_every_recording_rule_returns_data(self):
        # Prometheus evaluated each rule (its own series) and the expression itself answers now.
        for r in [r for r in rules() if "record" in r]:
            with self.subTest(record=r["record"]):
                self.assert_data(r["record"], r["expr"])
                self.assert_data(r["record"], r["record"])

    def test_rates_saw_the_work(self):
        self.assertGreater(self.prom.value(f'model:retain_generation_tokens:rate1m{{model="{MODEL}"}}'), 0)
        self.assertGreater(self.prom.value(f'model:retain_prompt_tokens:rate1m{{model="{MODEL}"}}'), 0)
        self.assertEqual(self.prom.value(f'model:retain_request_server_errors:ratio_rate5m{{model="{MODEL}"}}'), 0)
        self.assertEqual(self.prom.value(f'instance_model:retain_state_pool:utilization{{model="{MODEL}"}}'), 1)

    def test_every_rule_evaluates(self):
        def evaluated():
            groups = self.prom.get("/api/v1/rules")["data"]["groups"]
            rs = [r for g in groups for r in g["rules"]]
            return rs if all(r["health"] != "unknown" for r in rs) else None

        got = self.prom.wait(evaluated, "every rule evaluated")
        self.assertEqual(len(got), len(rules()))
        for r in got:
            self.assertEqual((r["name"], r["health"], r.get("lastError", "")), (r["name"], "ok", ""))

    def test_alert_expressions(self):
        """Each alert expression parses; this work makes exactly two non-empty: one eviction for
        room, and a pool held full by the live sessions."""
        alerts = [r for r in rules() if "alert" in r]
        self.assertEqual({a["alert"] for a in alerts},
                         {"RetainDown", "RetainHighErrorRate", "RetainQueueSaturated", "RetainTimeToFirstTokenP99High",
                          "RetainInterTokenLatencyP99High", "RetainStatePoolExhausted", "RetainSessionsEvicted"})
        non_empty = set()
        for a in alerts:
            with self.subTest(alert=a["alert"]):
                self.assertTrue(a["annotations"]["summary"] and a["annotations"]["runbook"])
                data = self.prom.query(a["expr"])
                self.assertEqual(data["resultType"], "vector")
                if data["result"]:
                    non_empty.add(a["alert"])
        self.assertEqual(non_empty, {"RetainSessionsEvicted", "RetainStatePoolExhausted"})

    def test_alerts_raised_by_the_work(self):
        def raised():
            got = {(a["labels"]["alertname"], a["state"]) for a in self.prom.get("/api/v1/alerts")["data"]["alerts"]}
            return got if len(got) == 2 else None

        got = self.prom.wait(raised, "two alerts")
        # RetainSessionsEvicted has no `for`: it fires at once; the pool must stay full 15m first.
        self.assertEqual(got, {("RetainSessionsEvicted", "firing"), ("RetainStatePoolExhausted", "pending")})
        (evicted,) = [a for a in self.prom.get("/api/v1/alerts")["data"]["alerts"]
                      if a["labels"]["alertname"] == "RetainSessionsEvicted"]
        self.assertEqual(evicted["labels"]["model"], MODEL)
        self.assertIn("sessions of model kjv were evicted", evicted["annotations"]["summary"])


if __name__ == "__main__":
    unittest.main()
