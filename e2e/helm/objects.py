"""Lists the objects of YAML manifest files (or stdin) for e2e/helm/run.sh.

    objects.py FILE...                  resource|apiVersion|namespace|name per object
    objects.py FILE --drop-foreign      only kinds this control plane serves (core + gatehouse.dev)
    objects.py --drop-kind K --yaml     stdin to stdout as YAML, without kind K
"""
import re
import sys

import yaml


class Yaml12Loader(yaml.SafeLoader):
    """Only true/false are booleans (YAML 1.2): the CRD property `on` stays `on`."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

args = sys.argv[1:]
drop_kinds = set()
as_yaml = "--yaml" in args
drop_foreign = "--drop-foreign" in args
files = []
i = 0
while i < len(args):
    if args[i] == "--drop-kind":
        drop_kinds.add(args[i + 1])
        i += 2
        continue
    if not args[i].startswith("--"):
        files.append(args[i])
    i += 1

FOREIGN_GROUPS = ("argoproj.io", "toolkit.fluxcd.io", "monitoring.coreos.com")
# Plural resource names for `kubectl get`, by kind.
PLURAL = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets",
          "HorizontalPodAutoscaler": "horizontalpodautoscalers", "ApiPolicy": "apipolicies"}

docs = []
for f in files or ["-"]:
    text = sys.stdin.read() if f == "-" else open(f).read()
    docs += [d for d in yaml.load_all(text, Loader=Yaml12Loader) if isinstance(d, dict) and d.get("kind")]
docs = [d for d in docs if d["kind"] not in drop_kinds]
if drop_foreign:
    docs = [d for d in docs if not d["apiVersion"].split("/")[0].endswith(FOREIGN_GROUPS)]
if as_yaml:
    yaml.safe_dump_all(docs, sys.stdout)
else:
    for d in docs:
        plural = PLURAL.get(d["kind"], d["kind"].lower() + "s")
        print("|".join([plural, d["apiVersion"], d["metadata"].get("namespace", ""), d["metadata"]["name"]]))
