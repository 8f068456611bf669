//! A replica set in memory for the coordinator's tests: each node has a
//! store and a hint store, and answers, fails, hangs or answers late as
//! the test scripts it; every call is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

use crate::error::ReplicaError;
use crate::quorum::CallResult;
use crate::replicas::{Replicas, Versions};
use crate::version::Record;

/// How a node answers one kind of call.
#[derive(Clone, Debug)]
pub(crate) enum Script {
    /// Answers at once.
    Answer,
    /// Fails at once with this error, changing nothing.
    Fail(ReplicaError),
    /// Never answers (the caller's deadline ends the call).
    Hang,
    /// Answers (and applies) after this long.
    Late(Duration),
}

/// The kinds of replica call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Write,
    Hints,
    Read,
}

/// One call as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub kind: Kind,
    pub node: String,
    /// The owner hints were for (hint calls).
    pub owner: Option<String>,
    pub keys: Vec<Bytes>,
}

#[derive(Default)]
struct State {
    data: HashMap<String, HashMap<Bytes, Record>>,
    /// Per node: (owner, key, version) of each hint kept.
    hints: HashMap<String, Vec<(String, Bytes, Record)>>,
    scripts: HashMap<(String, Kind), Script>,
    calls: Vec<Call>,
}

/// The fake replica set (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub(crate) struct FakeReplicas {
    state: Arc<Mutex<State>>,
}

impl FakeReplicas {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    /// Scripts how `node` answers calls of `kind`.
    pub fn script(&self, node: &str, kind: Kind, script: Script) {
        self.with(|s| s.scripts.insert((node.to_string(), kind), script));
    }

    /// Stores a version on `node` directly (a replica's prior state).
    pub fn put(&self, node: &str, key: &[u8], record: Record) {
        self.with(|s| {
            s.data
                .entry(node.to_string())
                .or_default()
                .insert(Bytes::copy_from_slice(key), record)
        });
    }

    /// `node`'s version of `key`.
    pub fn get(&self, node: &str, key: &[u8]) -> Option<Record> {
        self.with(|s| s.data.get(node).and_then(|d| d.get(key)).cloned())
    }

    /// The hints `node` keeps: (owner, key) each.
    pub fn hints(&self, node: &str) -> Vec<(String, Bytes)> {
        self.with(|s| {
            s.hints
                .get(node)
                .map(|h| h.iter().map(|(o, k, _)| (o.clone(), k.clone())).collect())
                .unwrap_or_default()
        })
    }

    /// Every call so far, in the order made.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// Logs a call and returns the script for it.
    fn begin(&self, call: Call) -> Script {
        self.with(|s| {
            let script = s
                .scripts
                .get(&(call.node.clone(), call.kind))
                .cloned()
                .unwrap_or(Script::Answer);
            s.calls.push(call);
            script
        })
    }

    /// Runs `apply` as `script` says.
    fn answer<T: Send + 'static>(
        &self,
        script: Script,
        apply: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> BoxFuture<'static, CallResult<T>> {
        let me = self.clone();
        async move {
            match script {
                Script::Answer => {}
                Script::Fail(e) => return Err(e),
                Script::Hang => futures::future::pending::<()>().await,
                Script::Late(d) => tokio::time::sleep(d).await,
            }
            Ok(me.with(apply))
        }
        .boxed()
    }
}

fn lww(store: &mut HashMap<Bytes, Record>, key: Bytes, record: Record) {
    match store.get(&key) {
        Some(cur) if !record.supersedes(cur) => {}
        _ => {
            store.insert(key, record);
        }
    }
}

impl Replicas for FakeReplicas {
    fn write(
        &self,
        node: &str,
        versions: Versions,
        _deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>> {
        let script = self.begin(Call {
            kind: Kind::Write,
            node: node.to_string(),
            owner: None,
            keys: versions.iter().map(|(k, _)| k.clone()).collect(),
        });
        let node = node.to_string();
        self.answer(script, move |s| {
            let store = s.data.entry(node).or_default();
            for (k, r) in versions {
                lww(store, k, r);
            }
        })
    }

    fn write_hints(
        &self,
        node: &str,
        owner: &str,
        versions: Versions,
        _deadline: Instant,
    ) -> BoxFuture<'static, CallResult<()>> {
        let script = self.begin(Call {
            kind: Kind::Hints,
            node: node.to_string(),
            owner: Some(owner.to_string()),
            keys: versions.iter().map(|(k, _)| k.clone()).collect(),
        });
        let (node, owner) = (node.to_string(), owner.to_string());
        self.answer(script, move |s| {
            let kept = s.hints.entry(node).or_default();
            for (k, r) in versions {
                kept.push((owner.clone(), k, r));
            }
        })
    }

    fn read(
        &self,
        node: &str,
        keys: Vec<Bytes>,
        _deadline: Instant,
    ) -> BoxFuture<'static, CallResult<Vec<Option<Record>>>> {
        let script = self.begin(Call {
            kind: Kind::Read,
            node: node.to_string(),
            owner: None,
            keys: keys.clone(),
        });
        let node = node.to_string();
        self.answer(script, move |s| {
            let store = s.data.get(&node);
            keys.iter()
                .map(|k| store.and_then(|d| d.get(k)).cloned())
                .collect()
        })
    }
}
