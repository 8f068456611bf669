//! Which namespaces the operator watches.
//!
//! The operator's RBAC is namespaced by default: the chart grants a Role in
//! each namespace it is told to watch, and a ClusterRole only when asked
//! (`rbac.clusterWide`). The controller must then watch exactly those
//! namespaces: a watch on a namespace the Role does not cover fails with
//! 403 on every retry. Watching every namespace is therefore something the
//! operator only does when told it may (`--all-namespaces`), never the
//! fallback of an empty list.

use std::collections::BTreeSet;

/// Longest Kubernetes namespace name (a DNS label).
const MAX_NAMESPACE_LEN: usize = 63;

/// The namespaces the controller watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (needs the cluster-wide ClusterRole).
    AllNamespaces,
    /// Only these namespaces, sorted, without duplicates, never empty.
    Namespaces(Vec<String>),
}

/// Why the watched namespaces cannot be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A name in the list is not a namespace name.
    #[error("{0:?} is not a namespace name (1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)")]
    InvalidNamespace(String),
    /// Nothing to watch: no list, not cluster-wide, and no own namespace.
    #[error("no namespace to watch: set WATCH_NAMESPACES, or POD_NAMESPACE, or --all-namespaces with cluster-wide RBAC")]
    Empty,
}

impl WatchScope {
    /// The scope from the operator's settings.
    ///
    /// * `list`: `WATCH_NAMESPACES`, comma-separated (blanks around names
    ///   and empty items are ignored);
    /// * `all_namespaces`: the RBAC is cluster-wide; with an empty list the
    ///   operator watches every namespace, with a list only the list;
    /// * `own_namespace`: the operator's namespace, watched alone when the
    ///   list is empty and the RBAC is not cluster-wide (the chart's
    ///   default: the release namespace only).
    pub fn resolve(
        list: &str,
        all_namespaces: bool,
        own_namespace: Option<&str>,
    ) -> Result<Self, ScopeError> {
        let mut names = BTreeSet::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !is_namespace_name(item) {
                return Err(ScopeError::InvalidNamespace(item.to_string()));
            }
            names.insert(item.to_string());
        }
        if !names.is_empty() {
            return Ok(Self::Namespaces(names.into_iter().collect()));
        }
        if all_namespaces {
            return Ok(Self::AllNamespaces);
        }
        match own_namespace.map(str::trim).filter(|s| !s.is_empty()) {
            Some(own) if is_namespace_name(own) => Ok(Self::Namespaces(vec![own.to_string()])),
            Some(own) => Err(ScopeError::InvalidNamespace(own.to_string())),
            None => Err(ScopeError::Empty),
        }
    }

    /// The namespaces to watch one by one (`None`: all at once).
    pub fn namespaces(&self) -> Option<&[String]> {
        match self {
            Self::AllNamespaces => None,
            Self::Namespaces(n) => Some(n),
        }
    }
}

impl std::fmt::Display for WatchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AllNamespaces => f.write_str("all namespaces"),
            Self::Namespaces(n) => f.write_str(&n.join(",")),
        }
    }
}

/// Whether `name` is a valid namespace name (an RFC 1123 DNS label).
fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAMESPACE_LEN
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && bytes.iter().all(|&b| edge(b) || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(names: &[&str]) -> WatchScope {
        WatchScope::Namespaces(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_list_is_watched_as_given_sorted_and_deduplicated() {
        let s = WatchScope::resolve(" db , apps,db,,", false, Some("ops")).expect("scope");
        assert_eq!(s, ns(&["apps", "db"]));
        assert_eq!(s.to_string(), "apps,db");
        // Cluster-wide RBAC may still watch only some namespaces.
        assert_eq!(
            WatchScope::resolve("db", true, None).expect("scope"),
            ns(&["db"])
        );
    }

    #[test]
    fn an_empty_list_means_the_own_namespace_unless_cluster_wide() {
        assert_eq!(
            WatchScope::resolve("", false, Some("tinykv-system")).expect("scope"),
            ns(&["tinykv-system"])
        );
        assert_eq!(
            WatchScope::resolve(" , ", true, Some("tinykv-system")).expect("scope"),
            WatchScope::AllNamespaces
        );
        assert_eq!(WatchScope::AllNamespaces.namespaces(), None);
        assert_eq!(
            WatchScope::resolve("", false, None),
            Err(ScopeError::Empty),
            "never all namespaces by default"
        );
        assert_eq!(
            WatchScope::resolve("", false, Some("  ")),
            Err(ScopeError::Empty)
        );
    }

    #[test]
    fn names_that_are_not_namespaces_are_refused() {
        for bad in ["Db", "-db", "db-", "d_b", "d.b", &"a".repeat(64)] {
            assert_eq!(
                WatchScope::resolve(&format!("ok,{bad}"), true, None),
                Err(ScopeError::InvalidNamespace(bad.to_string())),
                "{bad}"
            );
        }
        assert!(WatchScope::resolve(&"a".repeat(63), false, None).is_ok());
        assert_eq!(
            WatchScope::resolve("", false, Some("Bad")),
            Err(ScopeError::InvalidNamespace("Bad".into()))
        );
    }
}
