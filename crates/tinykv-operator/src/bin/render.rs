//! Prints, as YAML, every object the operator makes for each TinyKVCluster
//! in the given manifest files (other documents are skipped), so that they
//! can be checked offline (`make check-manifests` runs them through
//! `kubernetes-validate --strict`).
//!
//! `render FILE...`. A cluster without a namespace gets `default`, and one
//! without a uid a placeholder (the API server sets both). The generated
//! Secret holds a fresh random secret, as the operator's would.

use anyhow::{bail, Context as _};
use serde::Deserialize;
use tinykv_operator::builders::all_objects;
use tinykv_operator::TinyKVCluster;

fn main() -> anyhow::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        bail!("usage: render FILE...");
    }
    let mut clusters = 0;
    let mut out = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).with_context(|| file.clone())?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("TinyKVCluster") {
                continue;
            }
            let mut cluster: TinyKVCluster = serde_yaml::from_value(value)
                .with_context(|| format!("a TinyKVCluster in {file}"))?;
            let meta = &mut cluster.metadata;
            meta.namespace.get_or_insert_with(|| "default".to_string());
            meta.uid
                .get_or_insert_with(|| "00000000-0000-4000-8000-000000000000".to_string());
            let name = meta.name.clone().unwrap_or_default();
            for obj in all_objects(&cluster, &tinykv_auth::generate_secret())
                .with_context(|| format!("building the objects of {name} in {file}"))?
            {
                out.push_str(&format!(
                    "---\n# built by the operator for TinyKVCluster {name} in {file}\n"
                ));
                out.push_str(&serde_yaml::to_string(&obj)?);
            }
            clusters += 1;
        }
    }
    if clusters == 0 {
        bail!("no TinyKVCluster in {}", files.join(", "));
    }
    print!("{out}");
    Ok(())
}
