"""Chart tests: render charts/gatehouse with every values file in ci/ and check what the
chart promises (issue 5, acceptance 1-3): lint, Kubernetes 1.34 schemas, two containers
sharing the admin socket, probes and hardening, least-privilege RBAC without wildcards,
CRDs equal to crds/, the values schema rejecting bad values, manifests/install.yaml
current, and the Dockerfile building the binary exactly as the Makefile does.

Run with the tools venv (PyYAML comes with kubernetes-validate):
    e2e/tools/install.sh && target/tools/venv/bin/python -m unittest -v charts/tests/test_chart.py
(`make chart-test` does both.)
"""

import glob
import json
import os
import re
import shlex
import subprocess
import unittest

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(REPO, "charts", "gatehouse")
TOOLS = os.path.join(REPO, "target", "tools", "bin")
HELM = os.path.join(TOOLS, "helm")
VALIDATE = os.path.join(TOOLS, "kubernetes-validate")
CRDS = os.path.join(REPO, "crds", "gatehouse.dev_crds.yaml")
NAMESPACE = "gatehouse-system"
KUBE_VERSION = "1.34.0"
VALUES_FILES = sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml")))
# Kinds that are not part of Kubernetes itself: kubernetes-validate has no schema for
# them (the helm e2e installs what it can into a real API server instead).
NON_CORE_KINDS = {"ServiceMonitor"}
CHART_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                "helm.sh/chart", "app.kubernetes.io/part-of"}


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (only true/false), as the Rust generator of crds/ means them:
    PyYAML's YAML 1.1 would read the property `on` as the boolean True."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_all(text):
    return [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d]


def run(args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def render(values_file=None, extra=(), release="gatehouse"):
    args = [HELM, "template", release, CHART, "--namespace", NAMESPACE]
    if values_file:
        args += ["--values", values_file]
    out = run(args + list(extra)).stdout
    return out, load_all(out)


def values_of(values_file):
    with open(os.path.join(CHART, "values.yaml")) as f:
        base = yaml.safe_load(f)
    with open(values_file) as f:
        over = yaml.safe_load(f) or {}

    def merge(a, b):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v
        return a
    return merge(base, over)


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind):
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def flag(args, name):
    """The value of --name=value (the chart always writes flags that way)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return values


def seconds(duration):
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, f"drain timeout {duration!r} is not whole seconds"
    return int(m.group(1))


class Lint(unittest.TestCase):
    def test_helm_lint_strict_with_every_values_file(self):
        run([HELM, "lint", "--strict", CHART])
        for values in VALUES_FILES:
            with self.subTest(values=os.path.basename(values)):
                res = run([HELM, "lint", "--strict", CHART, "--values", values], check=False)
                self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def test_every_rendered_object_validates_against_kubernetes_1_34(self):
        for values in VALUES_FILES:
            with self.subTest(values=os.path.basename(values)):
                _, objs = render(values)
                core = [o for o in objs if o["kind"] not in NON_CORE_KINDS]
                path = os.path.join(REPO, "target", "tools", f"render-{os.path.basename(values)}")
                with open(path, "w") as f:
                    yaml.safe_dump_all(core, f)
                res = run([VALIDATE, "--strict", "--quiet", "-k", KUBE_VERSION, path], check=False)
                self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
                # --quiet prints only warnings and failures: a kind it has no schema for
                # is a warning, and every kind here must have one.
                self.assertEqual(res.stdout.strip() + res.stderr.strip(), "")

    def test_validator_rejects_an_unknown_field(self):
        # The check above means something only if a wrong object fails it.
        _, objs = render()
        deploy = one(objs, "Deployment")
        deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
        path = os.path.join(REPO, "target", "tools", "render-broken.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(deploy, f)
        res = run([VALIDATE, "--strict", "--quiet", "-k", KUBE_VERSION, path], check=False)
        self.assertNotEqual(res.returncode, 0)


class Pod(unittest.TestCase):
    def each(self):
        for values in VALUES_FILES:
            _, objs = render(values)
            yield os.path.basename(values), values_of(values), objs

    def test_two_containers_share_the_socket_volume_and_the_proxy_has_its_state_volume(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                containers = {c["name"]: c for c in pod["containers"]}
                self.assertEqual(sorted(containers), ["controller", "proxy"])
                volumes = {v["name"]: v for v in pod["volumes"]}
                self.assertIn("emptyDir", volumes["admin-socket"])
                self.assertIn("emptyDir", volumes["state"])
                ctl, proxy = containers["controller"], containers["proxy"]
                self.assertEqual(ctl["args"][0], "controller")
                self.assertEqual(proxy["args"][0], "proxy")
                ctl_mounts = {m["name"]: m["mountPath"] for m in ctl["volumeMounts"]}
                proxy_mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
                self.assertEqual(ctl_mounts["admin-socket"], proxy_mounts["admin-socket"])
                socket_ctl, = flag(ctl["args"], "admin-socket")
                socket_proxy, = flag(proxy["args"], "admin-socket")
                self.assertEqual(socket_ctl, socket_proxy)
                self.assertEqual(os.path.dirname(socket_ctl), ctl_mounts["admin-socket"])
                state, = flag(proxy["args"], "state-dir")
                self.assertEqual(state, proxy_mounts["state"])
                self.assertNotIn("state", ctl_mounts, "only the proxy writes the table")
                self.assertEqual(ctl["image"], proxy["image"])
                env = {e["name"]: e for e in ctl["env"]}
                self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")
                self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
                self.assertEqual(flag(ctl["args"], "namespace"), values["watchNamespaces"])

    def test_access_log_docs_and_mirror_flags_follow_their_values(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                args = {c["name"]: c for c in pod["containers"]}["proxy"]["args"]
                p = values["proxy"]
                self.assertEqual(flag(args, "access-log"), [p["accessLog"]])
                self.assertEqual([float(v) for v in flag(args, "access-log-sample")], [float(p["accessLogSample"])])
                self.assertEqual(flag(args, "mirror-max-in-flight"), [str(p["mirrorMaxInFlight"])])
                self.assertEqual(flag(args, "public-docs"), [p["publicDocsHost"]] if p["publicDocsHost"] else [])

    def test_tracing_flags_follow_their_values(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                args = {c["name"]: c for c in pod["containers"]}["proxy"]["args"]
                t = values["proxy"]["tracing"]
                if not t["otlpEndpoint"]:
                    self.assertEqual([a for a in args if a.startswith("--otlp-")], [], "tracing off: no --otlp-* flag")
                    continue
                self.assertEqual(flag(args, "otlp-endpoint"), [t["otlpEndpoint"]])
                self.assertEqual([float(v) for v in flag(args, "otlp-sample-ratio")], [float(t["sampleRatio"])])
                self.assertEqual(flag(args, "otlp-keep-slower-than"), [t["keepSlowerThan"]])
                self.assertEqual(args.count("--otlp-keep-429"), int(t["keep429"]))
                self.assertEqual(flag(args, "otlp-service-name"), [t["serviceName"]])

    def test_probes_hit_the_metrics_listener_and_the_admin_api_stays_on_loopback(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                proxy = next(c for c in pod["containers"] if c["name"] == "proxy")
                ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
                self.assertEqual(sorted(ports), ["http", "https", "metrics"], "no admin port is declared")
                metrics, = flag(proxy["args"], "metrics")
                self.assertEqual(metrics, f"0.0.0.0:{ports['metrics']}")
                http, = flag(proxy["args"], "http")
                self.assertEqual(http, f"0.0.0.0:{ports['http']}")
                https, = flag(proxy["args"], "https")
                self.assertEqual(https, f"0.0.0.0:{ports['https']}")
                admin, = flag(proxy["args"], "admin")
                self.assertTrue(admin.startswith("127.0.0.1:"), admin)
                ready = proxy["readinessProbe"]["httpGet"]
                live = proxy["livenessProbe"]["httpGet"]
                self.assertEqual((ready["path"], ready["port"]), ("/readyz", "metrics"))
                self.assertEqual((live["path"], live["port"]), ("/healthz", "metrics"))
                for svc in by_kind(objs, "Service"):
                    for p in svc["spec"]["ports"]:
                        self.assertIn(p["targetPort"], ("http", "https", "metrics"))
                traffic = next(s for s in by_kind(objs, "Service") if not s["metadata"]["name"].endswith("-metrics"))
                self.assertEqual([p["targetPort"] for p in traffic["spec"]["ports"]], ["http", "https"])
                self.assertEqual(traffic["spec"]["type"], values["service"]["type"])
                self.assertEqual(traffic["metadata"].get("annotations", {}), values["service"]["annotations"])

    def test_security_context_resources_and_drain(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertEqual(pod["securityContext"]["runAsUser"], 65532)
                self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
                for c in pod["containers"]:
                    sc = c["securityContext"]
                    self.assertTrue(sc["runAsNonRoot"], c["name"])
                    self.assertTrue(sc["readOnlyRootFilesystem"], c["name"])
                    self.assertFalse(sc["allowPrivilegeEscalation"], c["name"])
                    self.assertFalse(sc.get("privileged", False), c["name"])
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"], c["name"])
                    self.assertNotIn("add", sc["capabilities"], c["name"])
                    self.assertEqual(sc["seccompProfile"]["type"], "RuntimeDefault", c["name"])
                    self.assertIn("memory", c["resources"]["requests"], c["name"])
                    self.assertIn("cpu", c["resources"]["requests"], c["name"])
                    self.assertIn("memory", c["resources"]["limits"], c["name"])
                proxy = next(c for c in pod["containers"] if c["name"] == "proxy")
                pre_stop = proxy["lifecycle"]["preStop"]["sleep"]["seconds"]
                drain = seconds(flag(proxy["args"], "drain-timeout")[0])
                self.assertGreater(pod["terminationGracePeriodSeconds"], pre_stop + drain)
                self.assertGreater(pre_stop, 0)

    def test_replicas_pdb_and_hpa(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                deploy = one(objs, "Deployment")
                hpas = by_kind(objs, "HorizontalPodAutoscaler")
                if values["autoscaling"]["enabled"]:
                    self.assertNotIn("replicas", deploy["spec"], "the HPA owns the replica count")
                    self.assertEqual(len(hpas), 1)
                    self.assertGreaterEqual(hpas[0]["spec"]["minReplicas"], 2)
                else:
                    self.assertEqual(hpas, [])
                    self.assertGreaterEqual(deploy["spec"]["replicas"], 2)
                pdb = one(objs, "PodDisruptionBudget")
                self.assertEqual(pdb["spec"]["selector"]["matchLabels"], deploy["spec"]["selector"]["matchLabels"])
                self.assertEqual(deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)

    def test_optional_objects_follow_their_values(self):
        for name, values, objs in self.each():
            with self.subTest(values=name):
                self.assertEqual(len(by_kind(objs, "ServiceMonitor")), int(values["metrics"]["serviceMonitor"]["enabled"]))
                dashboards = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
                self.assertEqual(len(dashboards), int(values["metrics"].get("grafanaDashboard", {}).get("enabled", False)))
                self.assertEqual(len(by_kind(objs, "NetworkPolicy")), int(values["networkPolicy"]["enabled"]))

    def test_every_object_carries_the_helm_labels(self):
        for name, values, objs in self.each():
            for o in objs:
                with self.subTest(values=name, object=f"{o['kind']}/{o['metadata']['name']}"):
                    self.assertLessEqual(CHART_LABELS, set(o["metadata"].get("labels", {})))
                    if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "RoleBinding"):
                        self.assertEqual(o["metadata"].get("namespace"), NAMESPACE)


# What the controller does with the API (crates/controller): watch its inputs, patch the
# status of its own kinds (server-side apply), record Events, hold its Lease.
EXPECTED_CONTROLLER_RULES = [
    {"apiGroups": ["gatehouse.dev"], "resources": ["apiroutes", "upstreams", "apipolicies"], "verbs": ["list", "watch"]},
    {"apiGroups": ["gatehouse.dev"], "resources": ["apiroutes/status", "upstreams/status", "apipolicies/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
EXPECTED_LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["gatehouse-controller"], "verbs": ["get", "update"]},
]


class Dashboard(unittest.TestCase):
    """The Grafana dashboard ConfigMap: for the sidecar, and asking only for metrics that exist."""

    def dashboard(self, extra=()):
        _, objs = render(extra=["--set", "metrics.grafanaDashboard.enabled=true", *extra])
        maps = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
        self.assertEqual(len(maps), 1)
        return maps[0]

    def test_the_sidecar_label_is_there_by_default_and_replaceable(self):
        self.assertEqual(self.dashboard()["metadata"]["labels"]["grafana_dashboard"], "1")
        custom = self.dashboard(["--set", "metrics.grafanaDashboard.labels.dash=yes"])
        self.assertEqual(custom["metadata"]["labels"]["dash"], "yes")
        self.assertNotIn("grafana_dashboard", custom["metadata"]["labels"])

    def test_every_query_names_documented_metrics(self):
        board = json.loads(self.dashboard()["data"]["gatehouse.json"])
        self.assertEqual(board["uid"], "gatehouse-overview")
        with open(os.path.join(REPO, "docs", "metrics.md")) as f:
            documented = set(re.findall(r"^\| `(gatehouse_[a-z_]+)`", f.read(), re.M))
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        self.assertGreater(len(exprs), 15)
        for e in exprs:
            for name in re.findall(r"gatehouse_[a-z_]+", e):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                with self.subTest(metric=name):
                    self.assertIn(base, documented, f"{name} in the dashboard is not in docs/metrics.md")


class Rbac(unittest.TestCase):
    def test_no_wildcards_anywhere(self):
        for values in VALUES_FILES:
            _, objs = render(values)
            for role in by_kind(objs, "ClusterRole") + by_kind(objs, "Role"):
                for rule in role["rules"]:
                    with self.subTest(values=os.path.basename(values), role=role["metadata"]["name"], rule=rule):
                        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                            for item in rule.get(key, []):
                                self.assertNotIn("*", item)

    def test_rules_are_exactly_what_the_controller_needs(self):
        for values in VALUES_FILES:
            with self.subTest(values=os.path.basename(values)):
                _, objs = render(values)
                roles = {r["metadata"]["name"]: r for r in by_kind(objs, "ClusterRole")}
                self.assertEqual(by_kind(objs, "Role"), [])
                self.assertEqual(roles["gatehouse-controller"]["rules"], EXPECTED_CONTROLLER_RULES)
                self.assertEqual(roles["gatehouse-controller-lease"]["rules"], EXPECTED_LEASE_RULES)
                self.assertEqual(len(roles), 2)

    def test_bindings_cluster_wide_or_per_watched_namespace(self):
        for values_file in VALUES_FILES:
            with self.subTest(values=os.path.basename(values_file)):
                values = values_of(values_file)
                _, objs = render(values_file)
                sa = one(objs, "ServiceAccount")
                subject = {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
                crbs = by_kind(objs, "ClusterRoleBinding")
                rbs = by_kind(objs, "RoleBinding")
                lease = [b for b in rbs if b["roleRef"]["name"] == "gatehouse-controller-lease"]
                self.assertEqual(len(lease), 1)
                self.assertEqual(lease[0]["metadata"]["namespace"], NAMESPACE)
                watch = [b for b in rbs if b["roleRef"]["name"] == "gatehouse-controller"]
                if values["watchNamespaces"]:
                    self.assertEqual(crbs, [], "a namespaced install grants nothing cluster-wide")
                    self.assertEqual(sorted(b["metadata"]["namespace"] for b in watch), sorted(values["watchNamespaces"]))
                else:
                    self.assertEqual(len(crbs), 1)
                    self.assertEqual(crbs[0]["roleRef"]["name"], "gatehouse-controller")
                    self.assertEqual(watch, [])
                for b in crbs + rbs:
                    self.assertEqual(b["subjects"], [subject])
                pod = one(objs, "Deployment")["spec"]["template"]["spec"]
                self.assertEqual(pod["serviceAccountName"], sa["metadata"]["name"])


def strip_chart_metadata(crd):
    meta = crd["metadata"]
    for label in CHART_LABELS:
        meta.get("labels", {}).pop(label, None)
    meta.get("annotations", {}).pop("helm.sh/resource-policy", None)
    for key in ("labels", "annotations"):
        if meta.get(key) == {}:
            del meta[key]
    return crd


class Crds(unittest.TestCase):
    def test_the_chart_copy_is_byte_equal_to_crds(self):
        with open(CRDS, "rb") as a, open(os.path.join(CHART, "files", "crds.yaml"), "rb") as b:
            self.assertTrue(a.read() == b.read(),
                            "charts/gatehouse/files/crds.yaml differs from crds/: run `make chart-crds`")

    def test_rendered_crds_equal_crds_and_are_kept_on_uninstall(self):
        with open(CRDS) as f:
            expected = {d["metadata"]["name"]: d for d in load_all(f.read())}
        _, objs = render()
        rendered = by_kind(objs, "CustomResourceDefinition")
        self.assertEqual(sorted(c["metadata"]["name"] for c in rendered), sorted(expected))
        for crd in rendered:
            with self.subTest(crd=crd["metadata"]["name"]):
                self.assertEqual(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep")
                self.assertEqual(strip_chart_metadata(crd), expected[crd["metadata"]["name"]])
                retries = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].get("retries")
                if retries:
                    self.assertIn("on", retries["properties"], "the property `on` survived the render")

    def test_crds_install_false_renders_none(self):
        _, objs = render(extra=["--set", "crds.install=false"])
        self.assertEqual(by_kind(objs, "CustomResourceDefinition"), [])


class ValuesSchema(unittest.TestCase):
    BAD = [
        ["--set", "replicaCount=0"],
        ["--set", "service.type=Ingress"],
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "crds.install=yes"],
        ["--set", "watchNamespaces[0]=Not_A_Namespace"],
        ["--set", "proxy.httpPort=70000"],
        ["--set", "controller.coalesce=soon"],
        ["--set", "podAntiAffinityPreset=maybe"],
        ["--set", "unknownTopLevel=1"],
        ["--set", "proxy.unknown=1"],
        # not a schema rule: the template refuses a grace period shorter than preStop + drain
        ["--set", "terminationGracePeriodSeconds=20"],
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
        ["--set", "proxy.tracing.otlpEndpoint=otel-collector:4318"],
        ["--set-json", "proxy.tracing.sampleRatio=2"],
        ["--set", "proxy.tracing.keepSlowerThan=soon"],
        ["--set", "proxy.tracing.keep429=yes"],
        ["--set", "proxy.tracing.serviceName="],
        ["--set", "proxy.tracing.unknown=1"],
    ]

    def test_bad_values_fail_the_render(self):
        for extra in self.BAD:
            with self.subTest(values=" ".join(extra)):
                res = run([HELM, "template", "gatehouse", CHART] + extra, check=False)
                self.assertNotEqual(res.returncode, 0, f"rendered with {extra}")
                self.assertIn("Error", res.stderr)

    def test_the_defaults_and_every_ci_file_pass(self):
        for values in [None] + VALUES_FILES:
            render(values)


class Docs(unittest.TestCase):
    # Values whose default is a whole object documented as one row.
    OPAQUE = {"resources", "podSecurityContext", "containerSecurityContext"}

    def leaves(self, values, prefix=""):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and key not in self.OPAQUE:
                yield from self.leaves(value, path + ".")
            else:
                yield path

    def test_every_value_is_in_the_install_docs_table(self):
        with open(os.path.join(CHART, "values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(os.path.join(REPO, "docs", "install.md")) as f:
            rows = [line for line in f if line.startswith("| `")]
        for path in self.leaves(values):
            parent, _, leaf = path.rpartition(".")
            with self.subTest(value=path):
                self.assertTrue(any(f"`{path}`" in r or (parent and f"`{parent}.{leaf}`" in r)
                                    or (parent and f"`{parent}." in r and f"`.{leaf}`" in r) for r in rows),
                                f"docs/install.md has no row for {path}")


class Manifests(unittest.TestCase):
    def test_install_yaml_is_current(self):
        fresh = run([os.path.join(REPO, "charts", "render-install.sh")]).stdout
        with open(os.path.join(REPO, "manifests", "install.yaml")) as f:
            committed = f.read()
        self.assertTrue(fresh == committed, "manifests/install.yaml is stale: run `make manifests`")

    def test_install_yaml_holds_the_namespace_and_the_default_render(self):
        with open(os.path.join(REPO, "manifests", "install.yaml")) as f:
            objs = load_all(f.read())
        self.assertEqual(objs[0]["kind"], "Namespace")
        self.assertEqual(objs[0]["metadata"]["name"], NAMESPACE)
        _, rendered = render()
        self.assertEqual(objs[1:], rendered)


class Image(unittest.TestCase):
    def test_dockerfile_builds_with_the_makefile_release_command(self):
        with open(os.path.join(REPO, "Makefile")) as f:
            makefile = f.read()
        m = re.search(r"^RELEASE_BUILD\s*:?=\s*(.+)$", makefile, re.M)
        self.assertIsNotNone(m, "Makefile defines RELEASE_BUILD")
        make_cmd = shlex.split(m.group(1).replace("$(CARGO)", "cargo"))
        with open(os.path.join(REPO, "Dockerfile")) as f:
            dockerfile = f.read()
        runs = [shlex.split(r) for r in re.findall(r"^RUN\s+(?:--mount=\S+\s+)*(cargo build.*)$", dockerfile, re.M)]
        self.assertEqual(runs, [make_cmd], "the Dockerfile's cargo build must equal RELEASE_BUILD")
        self.assertIn("target/release/gatehouse", dockerfile)
        # The workspace's build settings (.cargo/config.toml: the allocator's) apply too.
        self.assertRegex(dockerfile, r"(?m)^COPY \.cargo \./\.cargo$")

    def test_runtime_stage_runs_as_nonroot_and_is_slim(self):
        with open(os.path.join(REPO, "Dockerfile")) as f:
            dockerfile = f.read()
        stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
        self.assertEqual(len(stages), 2, "multi-stage: build, then runtime")
        self.assertRegex(stages[-1], r"^gcr\.io/distroless/cc-debian12(:[\w.-]+)?(@sha256:[a-f0-9]{64})?$")
        self.assertRegex(dockerfile, r"(?m)^USER\s+65532:65532$")


if __name__ == "__main__":
    unittest.main()
