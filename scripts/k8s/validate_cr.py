#!/usr/bin/env python3
"""Validate TinyKVCluster objects against the CRD's own openAPIV3Schema, and
split the other objects into one file each for kubernetes-validate.

usage: validate_cr.py CRD_YAML OUT_DIR MANIFEST...

Every document of every MANIFEST is either
  * a tinykv.io object: validated here with jsonschema against the CRD's
    schema, made strict (additionalProperties: false wherever the schema
    lists properties and does not preserve unknown fields) so that a typo in
    a field name fails instead of being pruned silently by the API server;
  * a cert-manager.io Certificate (the operator's, for spec.tls.issuerRef):
    cert-manager is a CRD that kubernetes-validate does not know, so it is
    NOT validated strictly; check_certificate() checks the fields the
    operator sets against cert-manager v1's documented API instead;
  * a monitoring.coreos.com ServiceMonitor, PodMonitor or PrometheusRule
    (the charts' monitoring block): the Prometheus operator's CRDs are not
    known to kubernetes-validate either, so they are NOT validated strictly;
    check_monitoring.check_object() checks them field by field instead;
  * anything else: written to OUT_DIR/NNN-<kind>-<name>.yaml for
    kubernetes-validate.
Exit status 1 on any schema violation or when no TinyKVCluster was seen.
"""
import copy
import os
import sys

import jsonschema
import yaml

from check_monitoring import check_object as check_monitoring_object


def strict(schema):
    """Copy of an OpenAPI v3 schema turned into a strict JSON schema."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    # The API server adds these to every custom resource's root.
    s.setdefault("properties", {}).update(
        {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
        }
    )
    return s


CERT_MANAGER_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment",
    "key agreement", "data encipherment", "cert sign", "crl sign",
    "encipher only", "decipher only", "any", "server auth", "client auth",
    "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
}
CERT_SPEC_FIELDS = {
    "secretName", "dnsNames", "ipAddresses", "usages", "privateKey",
    "issuerRef", "secretTemplate", "commonName", "duration", "renewBefore",
}


def check_certificate(doc):
    """Errors in a cert-manager.io/v1 Certificate (not a full schema: the
    fields the operator writes, checked against cert-manager's v1 API)."""
    errs = []
    if doc.get("apiVersion") != "cert-manager.io/v1":
        errs.append(f"apiVersion {doc.get('apiVersion')!r} is not cert-manager.io/v1")
    spec = doc.get("spec") or {}
    unknown = set(spec) - CERT_SPEC_FIELDS
    if unknown:
        errs.append(f"unknown spec fields {sorted(unknown)}")
    if not isinstance(spec.get("secretName"), str) or not spec.get("secretName"):
        errs.append("spec.secretName must be a non-empty string")
    dns = spec.get("dnsNames", [])
    if not dns or not all(isinstance(d, str) and d for d in dns):
        errs.append("spec.dnsNames must be a non-empty list of names")
    if not all(isinstance(i, str) for i in spec.get("ipAddresses", [])):
        errs.append("spec.ipAddresses must be strings")
    bad = [u for u in spec.get("usages", []) if u not in CERT_MANAGER_USAGES]
    if bad:
        errs.append(f"unknown usages {bad}")
    issuer = spec.get("issuerRef") or {}
    if not issuer.get("name") or issuer.get("kind") not in ("Issuer", "ClusterIssuer"):
        errs.append("spec.issuerRef needs a name and kind Issuer or ClusterIssuer")
    if issuer.get("group", "cert-manager.io") != "cert-manager.io":
        errs.append("spec.issuerRef.group must be cert-manager.io")
    key = spec.get("privateKey") or {}
    if key.get("algorithm") not in (None, "RSA", "ECDSA", "Ed25519"):
        errs.append(f"privateKey.algorithm {key.get('algorithm')!r}")
    if key.get("rotationPolicy") not in (None, "Never", "Always"):
        errs.append(f"privateKey.rotationPolicy {key.get('rotationPolicy')!r}")
    return errs


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    crd_path, out_dir, manifests = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schemas = {
        f"{group}/{v['name']}": strict(v["schema"]["openAPIV3Schema"])
        for v in crd["spec"]["versions"]
    }
    os.makedirs(out_dir, exist_ok=True)
    failures, seen, n, certs, monitors = 0, 0, 0, 0, 0
    for path in manifests:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            api = doc.get("apiVersion", "")
            name = doc.get("metadata", {}).get("name", "?")
            if api.split("/")[0] == group:
                if doc.get("kind") != kind or api not in schemas:
                    print(f"FAIL {path}: unknown {api} {doc.get('kind')}")
                    failures += 1
                    continue
                seen += 1
                errors = sorted(
                    jsonschema.Draft7Validator(schemas[api]).iter_errors(doc),
                    key=lambda e: list(e.path),
                )
                for e in errors:
                    where = ".".join(str(p) for p in e.path) or "(root)"
                    print(f"FAIL {path}: {kind}/{name} {where}: {e.message}")
                failures += len(errors)
                if not errors:
                    print(f"ok   {path}: {kind}/{name} matches the CRD schema")
                continue
            if api.split("/")[0] == "cert-manager.io":
                errors = (
                    check_certificate(doc)
                    if doc.get("kind") == "Certificate"
                    else [f"unexpected cert-manager kind {doc.get('kind')}"]
                )
                for e in errors:
                    print(f"FAIL {path}: Certificate/{name}: {e}")
                failures += len(errors)
                if not errors:
                    certs += 1
                continue
            if api.split("/")[0] == "monitoring.coreos.com":
                errors = check_monitoring_object(doc)
                for e in errors:
                    print(f"FAIL {path}: {doc.get('kind')}/{name}: {e}")
                failures += len(errors)
                if not errors:
                    monitors += 1
                continue
            n += 1
            out = os.path.join(out_dir, f"{n:03d}-{doc.get('kind', 'x')}-{name}.yaml")
            with open(out, "w") as f:
                f.write(f"# from {path}\n")
                yaml.safe_dump(doc, f, sort_keys=False)
    if seen == 0:
        print(f"FAIL no {kind} object was validated")
        failures += 1
    print(f"{seen} {kind} object(s) checked against the CRD schema, {n} other object(s) split out")
    if certs:
        print(
            f"{certs} cert-manager Certificate(s) checked by field only: NOT validated "
            "strictly (cert-manager's CRD is not known to kubernetes-validate)"
        )
    if monitors:
        print(
            f"{monitors} ServiceMonitor/PodMonitor/PrometheusRule object(s) checked by field only: "
            "NOT validated strictly (the Prometheus operator's CRDs are not known to kubernetes-validate)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
