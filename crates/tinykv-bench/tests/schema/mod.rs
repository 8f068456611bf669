//! Checks a JSON value against the checked-in JSON Schema of the bench
//! report (`docs/bench-report.schema.json`). Only the keywords that schema
//! uses are understood (`type`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `minimum`, `maximum` and
//! `$ref` to `#/$defs/NAME`); any other keyword fails the check, so the
//! schema cannot grow a rule this checker would silently skip.

use serde_json::Value;

/// The checked-in schema.
pub fn bench_report_schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/bench-report.schema.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every way `value` breaks `schema`, as `path: problem` lines.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, schema, value, "$", &mut out);
    out
}

const KNOWN: &[&str] = &[
    "$schema",
    "title",
    "description",
    "$defs",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
    "$ref",
];

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        other => panic!("unknown type {other} in the schema"),
    }
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(rules) = schema.as_object() else {
        return out.push(format!("{path}: schema is not an object"));
    };
    if let Some(k) = rules.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        panic!("{path}: schema keyword {k} is not understood by this checker");
    }
    if let Some(t) = rules.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{path}: bad type"),
        };
        if !names.iter().any(|n| type_matches(n, value)) {
            return out.push(format!("{path}: {value} is not {names:?}"));
        }
    }
    if value.is_null() {
        return;
    }
    if let Some(Value::String(r)) = rules.get("$ref") {
        let name = r
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("{path}: $ref {r}"));
        let target = &root["$defs"][name];
        check(root, target, value, path, out);
    }
    if let Some(n) = value.as_f64() {
        if rules
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{path}: {n} below the minimum"));
        }
        if rules
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{path}: {n} above the maximum"));
        }
    }
    if let (Some(items), Some(array)) = (rules.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check(root, items, v, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(object) = value.as_object() {
        check_object(root, rules, object, path, out);
    }
}

fn check_object(
    root: &Value,
    rules: &serde_json::Map<String, Value>,
    object: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    let properties = rules.get("properties").and_then(Value::as_object);
    for name in rules
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap_or_default();
        if !object.contains_key(name) {
            out.push(format!("{path}: missing {name}"));
        }
    }
    let closed = rules.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, v) in object {
        match properties.and_then(|p| p.get(name)) {
            Some(s) => check(root, s, v, &format!("{path}.{name}"), out),
            None if closed => out.push(format!("{path}: unexpected field {name}")),
            None => {}
        }
    }
}
