#!/usr/bin/env python3
"""Offline checks of the charts' monitoring objects.

usage: check_monitoring.py --self-test
       check_monitoring.py --metrics-doc docs/metrics.md --runbooks docs/operations.md \
           --dashboard FILE.json MANIFEST...

ServiceMonitor, PodMonitor and PrometheusRule (monitoring.coreos.com/v1)
are custom resources of the Prometheus operator, which kubernetes-validate
does not know: they are NOT validated by kubernetes-validate --strict.
check_object() checks them field by field instead, against the fields the
charts write and the Prometheus operator's v1 API (validate_cr.py calls it
for every such object it meets); the PromQL in them is checked for balanced
brackets and quotes only (no promtool here).

The command line then checks, across MANIFEST... and the dashboard JSON:
  * every tinykv_* and process_* metric an alert or a panel queries is
    listed in docs/metrics.md (the live node is asked by the Rust test
    tests/tests/monitoring.rs);
  * every alert has severity, summary, description and a runbook_url whose
    anchor is a heading of docs/operations.md;
  * the dashboard parses, has unique panel ids and a query in every panel;
  * with --built FILE (the objects the operator builds, from its `render`
    binary): each PodMonitor, and each metrics Service of a ServiceMonitor,
    selects the pod template of the StatefulSet the operator makes for that
    cluster, and that pod template has the container port they scrape.
Exit status 1 on any error, or when no PrometheusRule was seen.
"""
import json
import re
import sys

import yaml

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
METRIC = re.compile(r"\b((?:tinykv|process)_[a-z_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
    "tlsConfig", "bearerTokenSecret", "basicAuth", "params", "proxyUrl",
    "followRedirects", "enableHttp2", "filterRunning", "authorization",
    "oauth2", "trackTimestampsStaleness", "scrapeFallbackProtocol",
}
MONITOR_SPEC_FIELDS = {
    "ServiceMonitor": {
        "selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
        "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata",
        "scrapeProtocols", "scrapeClass", "selectorMechanism",
    },
    "PodMonitor": {
        "selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel",
        "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata",
        "scrapeProtocols", "scrapeClass", "selectorMechanism",
    },
}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def balanced(expr):
    """Error text when brackets or quotes of a PromQL expression do not pair up."""
    pairs, stack, quote = {")": "(", "]": "[", "}": "{"}, [], None
    for i, ch in enumerate(expr):
        if quote:
            if ch == "\\":
                continue
            if ch == quote and expr[i - 1] != "\\":
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            if not stack or stack.pop() != pairs[ch]:
                return f"unbalanced {ch!r} at {i}"
    if quote:
        return "unterminated string"
    if stack:
        return f"unclosed {stack[-1]!r}"
    return None


def metric_names(expr):
    """tinykv_* and process_* names in a query, histogram suffixes stripped."""
    out = set()
    for name in METRIC.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and not name.endswith("_total"):
                name = name[: -len(suffix)]
                break
        out.add(name)
    return out


def is_label_map(v):
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()
    )


def check_selector(sel, where):
    errs = []
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return [f"{where} must select something (matchLabels or matchExpressions)"]
    if set(sel) - {"matchLabels", "matchExpressions"}:
        errs.append(f"{where}: unknown fields {sorted(set(sel) - {'matchLabels', 'matchExpressions'})}")
    if "matchLabels" in sel and not is_label_map(sel["matchLabels"]):
        errs.append(f"{where}.matchLabels must map strings to strings")
    return errs


def check_monitor(doc):
    kind = doc["kind"]
    spec = doc.get("spec") or {}
    errs = []
    unknown = set(spec) - MONITOR_SPEC_FIELDS[kind]
    if unknown:
        errs.append(f"unknown spec fields {sorted(unknown)}")
    errs += check_selector(spec.get("selector"), "spec.selector")
    ns = spec.get("namespaceSelector")
    if ns is not None:
        if not isinstance(ns, dict) or set(ns) - {"any", "matchNames"}:
            errs.append("spec.namespaceSelector takes any and matchNames only")
        elif not all(isinstance(n, str) and n for n in ns.get("matchNames", [])):
            errs.append("spec.namespaceSelector.matchNames must be names")
    key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    eps = spec.get(key)
    if not isinstance(eps, list) or not eps:
        return errs + [f"spec.{key} must be a non-empty list"]
    for i, ep in enumerate(eps):
        where = f"spec.{key}[{i}]"
        if not isinstance(ep, dict):
            errs.append(f"{where} must be an object")
            continue
        unknown = set(ep) - ENDPOINT_FIELDS
        if unknown:
            errs.append(f"{where}: unknown fields {sorted(unknown)}")
        if not isinstance(ep.get("port"), str) or not ep.get("port"):
            errs.append(f"{where}.port must name a port")
        if ep.get("scheme", "http") not in ("http", "https", "HTTP", "HTTPS"):
            errs.append(f"{where}.scheme {ep.get('scheme')!r}")
        if not str(ep.get("path", "/metrics")).startswith("/"):
            errs.append(f"{where}.path must start with /")
        for d in ("interval", "scrapeTimeout"):
            if d in ep and not DURATION.match(str(ep[d])):
                errs.append(f"{where}.{d} {ep[d]!r} is not a Prometheus duration")
    return errs


def check_rule(doc):
    spec = doc.get("spec") or {}
    errs = []
    if set(spec) != {"groups"}:
        errs.append(f"spec must hold groups only, has {sorted(spec)}")
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return errs + ["spec.groups must be a non-empty list"]
    names = set()
    for g, group in enumerate(groups):
        where = f"spec.groups[{g}]"
        if not isinstance(group.get("name"), str) or not group.get("name"):
            errs.append(f"{where}.name must be a non-empty string")
        if group.get("name") in names:
            errs.append(f"{where}.name {group.get('name')!r} repeated")
        names.add(group.get("name"))
        unknown = set(group) - {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
        if unknown:
            errs.append(f"{where}: unknown fields {sorted(unknown)}")
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            errs.append(f"{where}.rules must be a non-empty list")
            continue
        for r, rule in enumerate(rules):
            rw = f"{where}.rules[{r}]"
            unknown = set(rule) - RULE_FIELDS
            if unknown:
                errs.append(f"{rw}: unknown fields {sorted(unknown)}")
            if ("alert" in rule) == ("record" in rule):
                errs.append(f"{rw} needs exactly one of alert and record")
            expr = rule.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errs.append(f"{rw}.expr must be a non-empty string")
            elif balanced(expr):
                errs.append(f"{rw}.expr: {balanced(expr)}")
            for d in ("for", "keep_firing_for"):
                if d in rule and not DURATION.match(str(rule[d])):
                    errs.append(f"{rw}.{d} {rule[d]!r} is not a Prometheus duration")
            for m in ("labels", "annotations"):
                if m in rule and not is_label_map(rule[m]):
                    errs.append(f"{rw}.{m} must map strings to strings")
    return errs


def check_object(doc):
    """Errors in a monitoring.coreos.com object (validate_cr.py calls this)."""
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        return [f"apiVersion {doc.get('apiVersion')!r} is not monitoring.coreos.com/v1"]
    meta = doc.get("metadata") or {}
    errs = [] if meta.get("name") else ["metadata.name missing"]
    kind = doc.get("kind")
    if kind in MONITOR_SPEC_FIELDS:
        return errs + check_monitor(doc)
    if kind == "PrometheusRule":
        return errs + check_rule(doc)
    return errs + [f"unexpected monitoring.coreos.com kind {kind}"]


def documented_metrics(path):
    with open(path) as f:
        return set(re.findall(r"^\| `((?:tinykv|process)_[a-z_]+)` \|", f.read(), re.M))


def headings(path):
    """GitHub's anchors of the headings of a Markdown file."""
    out = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^#+\s+(.*?)\s*$", line)
            if m:
                text = re.sub(r"[^\w\- ]", "", m.group(1).lower())
                out.add(text.replace(" ", "-"))
    return out


def check_alerts(doc, anchors):
    errs = []
    for group in doc["spec"]["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name, ann = rule["alert"], rule.get("annotations", {})
            if not rule.get("labels", {}).get("severity"):
                errs.append(f"alert {name}: no severity label")
            for a in ("summary", "description", "runbook_url"):
                if not ann.get(a):
                    errs.append(f"alert {name}: no {a} annotation")
            url = ann.get("runbook_url", "")
            anchor = url.partition("#")[2]
            if not anchor or anchor not in anchors:
                errs.append(f"alert {name}: runbook_url {url!r} names no section of docs/operations.md")
    return errs


def check_dashboard(path):
    with open(path) as f:
        dash = json.load(f)
    errs, exprs, ids = [], [], set()
    for p in dash.get("panels", []):
        if p.get("id") in ids:
            errs.append(f"panel id {p.get('id')} repeated")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        targets = [t.get("expr", "") for t in p.get("targets", [])]
        if not targets or not all(targets):
            errs.append(f"panel {p.get('title')!r} has no query")
        for e in targets:
            if balanced(e):
                errs.append(f"panel {p.get('title')!r}: {balanced(e)} in {e}")
        exprs += targets
    return errs, exprs


def check_targets(docs, built):
    """PodMonitors and metrics Services against the operator's StatefulSets."""
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in built
        if d.get("kind") == "StatefulSet"
    }
    errs, checked = [], 0
    for d in docs:
        kind = d.get("kind")
        if (d.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/name") != "tinykv-cluster":
            continue  # the operator chart's own ServiceMonitor scrapes the operator
        if kind == "PodMonitor":
            selector = d["spec"]["selector"].get("matchLabels", {})
            ports = [e.get("port") for e in d["spec"]["podMetricsEndpoints"]]
        elif kind == "Service" and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "metrics":
            selector = d["spec"].get("selector", {})
            ports = [p.get("targetPort") for p in d["spec"]["ports"]]
        else:
            continue
        name = selector.get("app.kubernetes.io/instance")
        template = pods.get(name)
        if template is None:
            errs.append(f"{kind}/{d['metadata']['name']}: no StatefulSet {name!r} among the built objects")
            continue
        checked += 1
        labels = template["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            errs.append(f"{kind}/{d['metadata']['name']}: selector {selector} does not match the pods' labels {labels}")
        named = {
            p.get("name")
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in ports:
            if port not in named:
                errs.append(f"{kind}/{d['metadata']['name']}: the pods have no port named {port!r} ({sorted(named)})")
    return errs, checked


def self_test():
    good_rule = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{
            "alert": "A", "expr": 'rate(tinykv_x_total{a="b"}[5m]) > 0', "for": "5m",
            "labels": {"severity": "warning"}, "annotations": {"summary": "s"}}]}]},
    }
    good_pm = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "p"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}]},
    }
    assert check_object(good_rule) == [], check_object(good_rule)
    assert check_object(good_pm) == [], check_object(good_pm)
    cases = []

    def bad(base, change, what):
        doc = json.loads(json.dumps(base))
        change(doc)
        cases.append((doc, what))

    rule = lambda d: d["spec"]["groups"][0]["rules"][0]  # noqa: E731
    bad(good_rule, lambda d: rule(d).update(expr="rate(x[5m] > 0"), "unbalanced expr")
    bad(good_rule, lambda d: rule(d).update(expr='x{a="b}'), "unterminated string")
    bad(good_rule, lambda d: rule(d).update({"for": "5 minutes"}), "bad duration")
    bad(good_rule, lambda d: rule(d).update(record="r"), "alert and record")
    bad(good_rule, lambda d: rule(d).update(exprr="x"), "misspelt field")
    bad(good_rule, lambda d: rule(d)["labels"].update(severity=1), "non-string label")
    bad(good_rule, lambda d: d["spec"].update(groups=[]), "no groups")
    bad(good_pm, lambda d: d["spec"].update(endpoints=d["spec"].pop("podMetricsEndpoints")), "ServiceMonitor field in a PodMonitor")
    bad(good_pm, lambda d: d["spec"]["podMetricsEndpoints"][0].pop("port"), "no port")
    bad(good_pm, lambda d: d["spec"]["podMetricsEndpoints"][0].update(interval=30), "numeric interval")
    bad(good_pm, lambda d: d["spec"].update(selector={}), "empty selector")
    bad(good_pm, lambda d: d.update(apiVersion="monitoring.coreos.com/v1beta1"), "wrong version")
    for doc, what in cases:
        if not check_object(doc):
            print(f"FAIL self-test: {what} was not caught")
            return 1
    assert check_alerts(good_rule, {"x"}), "missing runbook not caught"
    assert metric_names("histogram_quantile(0.9, rate(tinykv_a_seconds_bucket[1m])) + tinykv_b_total") == {
        "tinykv_a_seconds", "tinykv_b_total"}
    print(f"ok   self-test: valid monitors and rules pass, {len(cases) + 1} faults are caught")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    args = {"--metrics-doc": None, "--runbooks": None, "--dashboard": None, "--built": ""}
    files = []
    it = iter(argv)
    for a in it:
        if a in args:
            args[a] = next(it)
        else:
            files.append(a)
    if None in args.values() or not files:
        print(__doc__, file=sys.stderr)
        return 2
    documented = documented_metrics(args["--metrics-doc"])
    anchors = headings(args["--runbooks"])
    errs, rules = [], 0
    derrs, exprs = check_dashboard(args["--dashboard"])
    errs += [f"{args['--dashboard']}: {e}" for e in derrs]
    used = {n: args["--dashboard"] for e in exprs for n in metric_names(e)}
    all_docs = []
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    all_docs.append(doc)
                if not doc or doc.get("kind") != "PrometheusRule":
                    continue
                rules += 1
                errs += [f"{path}: {e}" for e in check_object(doc) + check_alerts(doc, anchors)]
                for g in doc["spec"]["groups"]:
                    for r in g["rules"]:
                        used.update({n: path for n in metric_names(r["expr"])})
    for name, where in sorted(used.items()):
        if name not in documented:
            errs.append(f"{where}: {name} is not a metric of docs/metrics.md")
    if rules == 0:
        errs.append("no PrometheusRule seen")
    if args["--built"]:
        with open(args["--built"]) as f:
            built = [d for d in yaml.safe_load_all(f) if d]
        terrs, checked = check_targets(all_docs, built)
        errs += terrs
        if checked == 0:
            errs.append("no PodMonitor or metrics Service checked against the built pods")
        elif not terrs:
            print(f"ok   {checked} PodMonitor(s)/metrics Service(s) select the operator's pods and their metrics port")
    for e in errs:
        print(f"FAIL {e}")
    if not errs:
        print(f"ok   {rules} PrometheusRule(s) and the dashboard ({len(exprs)} queries) use "
              f"{len(used)} documented metrics; every alert has a runbook section")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
