#!/usr/bin/env python3
"""Write each chart's README.md from its values.yaml comments.

usage: chart_readme.py [--check] [CHART_DIR...]   (default: charts/*)

A value is documented by a comment starting `# -- ` right above it
(continued by the `#` lines that follow), as helm-docs reads them. The
README gets the chart's name, description and versions from Chart.yaml and
a table of every documented value: its key, its type (from
values.schema.json, with the allowed values of an enum), its default (from
values.yaml, as JSON) and the comment. A documented key missing from
values.schema.json is an error.

--check writes nothing and exits 1 when a README is not what would be
written (`make check-manifests` runs it). Python standard library only,
so the values.yaml parser knows the subset the charts use: block mappings,
block lists of scalars, `{}`/`[]`, plain and quoted scalars, comments.
"""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scalar(text):
    """A YAML scalar (the plain, quoted and flow-empty forms the charts use)."""
    t = text.strip()
    if t in ("", "~", "null"):
        return None
    if t == "{}":
        return {}
    if t == "[]":
        return []
    if t in ("true", "false"):
        return t == "true"
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return json.loads(t) if t[0] == '"' else t[1:-1].replace("''", "'")
    if re.fullmatch(r"[-+]?[0-9]+", t):
        return int(t)
    if re.fullmatch(r"[-+]?([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?", t):
        return float(t)
    if t[0] in "[{&*!|>":
        raise ValueError(f"unsupported YAML in values.yaml: {t!r}")
    return t


def strip_comment(value):
    """The value part of a line without a trailing ` # comment` (outside quotes)."""
    quote = None
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or value[i - 1] in " \t"):
            return value[:i].rstrip()
    return value.rstrip()


def parse_values(text):
    """(values, docs): the parsed values.yaml and {dotted.key: comment}."""
    lines = text.splitlines()
    docs = {}
    root = {}
    # Stack of (indent, container, path) for open mappings and lists.
    stack = [(-1, root, [])]
    pending = None  # comment lines of the `# --` block above the next key
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" "))
        if not stripped:
            pending = None if pending is not None and pending[-1] == "" else pending
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if body.startswith("-- ") or body == "--":
                pending = [body[3:].strip()]
            elif pending is not None:
                pending.append(body)
            continue
        while stack and indent <= stack[-1][0]:
            stack.pop()
        _, container, path = stack[-1]
        if stripped.startswith("- "):
            if not isinstance(container, list):
                raise ValueError(f"line {i}: a list item outside a list")
            container.append(scalar(strip_comment(stripped[2:])))
            continue
        m = re.match(r'^("[^"]+"|[A-Za-z0-9_.\-/]+):(\s+(.*))?$', stripped)
        if not m or not isinstance(container, dict):
            raise ValueError(f"line {i}: cannot read {stripped!r}")
        key = m.group(1).strip('"')
        value = strip_comment(m.group(3) or "")
        keypath = path + [key]
        if pending is not None:
            docs[".".join(keypath)] = " ".join(p for p in pending if p)
            pending = None
        if value:
            container[key] = scalar(value)
            continue
        # A block: a list when the next content line starts with "- ".
        nxt = next(
            (ln for ln in lines[i:] if ln.strip() and not ln.strip().startswith("#")), ""
        )
        nindent = len(nxt) - len(nxt.lstrip(" "))
        if nxt.strip().startswith("- ") and nindent >= indent:
            container[key] = []
            # Items may sit at the key's own indent (`key:` then `- a`).
            stack.append((indent - 1 if nindent == indent else indent, container[key], keypath))
        elif nindent > indent:
            container[key] = {}
            stack.append((indent, container[key], keypath))
        else:
            container[key] = None
    return root, docs


def lookup(values, dotted):
    v = values
    for part in dotted.split("."):
        v = v[part]
    return v


def schema_at(schema, dotted):
    node = schema
    defs = schema.get("definitions", {})

    def resolve(n):
        while isinstance(n, dict) and "$ref" in n:
            n = defs[n["$ref"].split("/")[-1]]
        return n

    for part in dotted.split("."):
        node = resolve(node).get("properties", {}).get(part)
        if node is None:
            return None
    return resolve(node)


def type_of(schema_node, value):
    t = schema_node.get("type") if schema_node else None
    if t is None:
        t = {bool: "boolean", int: "integer", float: "number", str: "string",
             dict: "object", list: "array"}.get(type(value), "any")
    text = " or ".join(t) if isinstance(t, list) else t
    if schema_node and "enum" in schema_node:
        text += " (" + ", ".join(json.dumps(e) for e in schema_node["enum"]) + ")"
    return text


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render(chart_dir):
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = {}
        for line in f:
            m = re.match(r"^(name|description|version|appVersion):\s*(.*)$", line)
            if m:
                chart[m.group(1)] = scalar(m.group(2))
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values, docs = parse_values(f.read())
    with open(os.path.join(chart_dir, "values.schema.json")) as f:
        schema = json.load(f)
    rows, errors = [], []
    for key, comment in docs.items():
        node = schema_at(schema, key)
        if node is None:
            errors.append(f"{chart_dir}: {key} is documented but not in values.schema.json")
        value = lookup(values, key)
        default = json.dumps(value, separators=(", ", ": "))
        rows.append(f"| `{key}` | {cell(type_of(node, value))} | `{cell(default)}` | {cell(comment)} |")
    name = chart["name"]
    out = [
        f"# {name}",
        "",
        "<!-- Generated by scripts/k8s/chart_readme.py from values.yaml; do not edit. -->",
        "",
        str(chart["description"]),
        "",
        f"Chart version {chart['version']}, app version {chart['appVersion']} "
        "(the default image tag). Guide: [docs/kubernetes.md](../../docs/kubernetes.md).",
        "",
        "```sh",
        f"helm install <release> charts/{name} --namespace <namespace>",
        f"helm upgrade <release> charts/{name} --namespace <namespace> --reuse-values --set key=value",
        "```",
        "",
        "`values.schema.json` checks every value below (types, allowed values,",
        "minimums, and no unknown keys): `helm install`, `upgrade`, `template`",
        "and `lint` refuse a value that does not fit.",
        "",
        "## Values",
        "",
        "| Key | Type | Default | Description |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(out), errors


def main(argv):
    check = "--check" in argv
    charts = [a for a in argv if a != "--check"] or sorted(
        glob.glob(os.path.join(ROOT, "charts", "*"))
    )
    failed = False
    for chart_dir in charts:
        text, errors = render(chart_dir)
        for e in errors:
            print(f"FAIL {e}")
            failed = True
        path = os.path.join(chart_dir, "README.md")
        current = open(path).read() if os.path.exists(path) else None
        rel = os.path.relpath(path, ROOT)
        if check:
            if current != text:
                print(f"FAIL {rel} is out of date: run scripts/k8s/chart_readme.py")
                failed = True
            else:
                print(f"ok   {rel} matches values.yaml")
        elif current != text:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {rel}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
