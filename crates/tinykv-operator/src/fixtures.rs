//! Test helpers (compiled only for `cargo test`, never into the operator
//! binary): a mocked API server that asserts each call in order (the kube-rs
//! controller-rs `ApiServerVerifier` pattern on `tower-test`), and
//! [`MockNodeAdmin`], a scripted [`NodeAdmin`] that records its calls.
//!
//! A test lists the calls it expects with [`Expect`]; the verifier answers
//! them one by one and fails on any difference. When the list is exhausted
//! the mock is dropped, so an unexpected extra call makes the reconciler fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tinykv_auth::{Secrets, Signer};

use crate::metrics::Metrics;
use crate::node_admin::{
    DecommissionProgress, NodeAdmin, NodeCreds, NodeError, NodeStatus, STATE_LEAVING,
};
use crate::reconciler::Context;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected API call.
pub enum Expect {
    /// GET of `path`, answered with the object or with 404.
    Get(String, Option<Value>),
    /// Server-side apply (PATCH, apply-patch content type, our field manager,
    /// force) of `path`; the closure checks the body.
    Apply(String, Box<dyn FnOnce(&Value) + Send>),
    /// POST (create) to the collection `path` with our field manager; the
    /// closure checks the body, answered with the body as created.
    Create(String, Box<dyn FnOnce(&Value) + Send>),
    /// POST (create) to `path`, answered 409 AlreadyExists (a race lost).
    CreateConflict(String),
    /// DELETE of `path`.
    Delete(String),
    /// DELETE of `path`; the closure checks the body (the DeleteParams,
    /// with any preconditions).
    DeleteWith(String, Box<dyn FnOnce(&Value) + Send>),
    /// An event with this reason and type (`Normal` or `Warning`).
    Event(&'static str, &'static str),
    /// An event with this reason, type and note, reported by this
    /// controller instance (`reportingInstance`).
    EventBy {
        /// `reason`.
        reason: &'static str,
        /// `Normal` or `Warning`.
        type_: &'static str,
        /// The `note` contains this.
        note: String,
        /// `reportingInstance`.
        instance: &'static str,
    },
    /// Server-side apply of `path`, refused with this HTTP code and message
    /// (as the API server refuses an invalid or forbidden object).
    ApplyRefused(String, u16, String),
}

/// A handle on the calls the verifier saw.
pub struct Verifier {
    task: tokio::task::JoinHandle<Vec<Value>>,
}

impl Verifier {
    /// Wait (bounded) for every expected call to have happened; returns the
    /// request bodies of the Apply calls, in order.
    pub async fn done(self) -> Vec<Value> {
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the reconciler did not make every expected call")
            .expect("a scenario assertion failed")
    }
}

fn apply_path_ok(req: &Request<Body>, path: &str) {
    assert_eq!(req.method(), Method::PATCH, "expected apply of {path}");
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default();
    assert!(
        query.contains("fieldManager=tinykv-operator"),
        "field manager in {query}"
    );
    assert!(query.contains("force=true"), "force in {query}");
    let ctype = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(ctype, "application/apply-patch+yaml");
}

async fn serve(mut handle: Handle, script: Vec<Expect>) -> Vec<Value> {
    let mut applied = Vec::new();
    for expect in script {
        let (req, send) = handle
            .next_request()
            .await
            .expect("the reconciler stopped before all expected calls");
        let method = req.method().clone();
        let uri = req.uri().clone();
        match expect {
            Expect::Get(path, obj) => {
                assert_eq!((method, uri.path()), (Method::GET, path.as_str()));
                let resp = match obj {
                    Some(v) => Response::builder().body(Body::from(v.to_string().into_bytes())),
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::from(
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"})
                            .to_string()
                            .into_bytes(),
                        )),
                };
                send.send_response(resp.expect("response"));
            }
            Expect::Apply(path, check) => {
                apply_path_ok(&req, &path);
                let body = req.into_body().collect_bytes().await.expect("body");
                let value: Value = serde_json::from_slice(&body).expect("apply body is json");
                check(&value);
                // Answer as the API server would: the object, with metadata.
                let mut answer = value.clone();
                if answer.get("metadata").is_none() {
                    answer["metadata"] = json!({"name": "demo", "namespace": "db"});
                }
                if answer.get("spec").is_none() {
                    answer["spec"] = json!({});
                }
                applied.push(value);
                send.send_response(
                    Response::builder()
                        .body(Body::from(answer.to_string().into_bytes()))
                        .expect("response"),
                );
            }
            Expect::Create(path, check) => {
                assert_eq!((method, uri.path()), (Method::POST, path.as_str()));
                let query = uri.query().unwrap_or_default();
                assert!(
                    query.contains("fieldManager=tinykv-operator"),
                    "field manager in {query}"
                );
                let body = req.into_body().collect_bytes().await.expect("body");
                let value: Value = serde_json::from_slice(&body).expect("create body is json");
                check(&value);
                applied.push(value.clone());
                send.send_response(
                    Response::builder()
                        .status(StatusCode::CREATED)
                        .body(Body::from(value.to_string().into_bytes()))
                        .expect("response"),
                );
            }
            Expect::CreateConflict(path) => {
                assert_eq!((method, uri.path()), (Method::POST, path.as_str()));
                send.send_response(
                    Response::builder()
                        .status(StatusCode::CONFLICT)
                        .body(Body::from(
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "AlreadyExists", "code": 409, "message": "exists"})
                            .to_string()
                            .into_bytes(),
                        ))
                        .expect("response"),
                );
            }
            Expect::Delete(path) => {
                assert_eq!((method, uri.path()), (Method::DELETE, path.as_str()));
                send.send_response(deleted());
            }
            Expect::DeleteWith(path, check) => {
                assert_eq!((method, uri.path()), (Method::DELETE, path.as_str()));
                let body = req.into_body().collect_bytes().await.expect("body");
                check(&serde_json::from_slice(&body).expect("delete body is json"));
                send.send_response(deleted());
            }
            Expect::Event(reason, type_) => {
                let (_, resp) = event(req, reason, type_).await;
                send.send_response(resp);
            }
            Expect::EventBy {
                reason,
                type_,
                note,
                instance,
            } => {
                let (value, resp) = event(req, reason, type_).await;
                let got = value["note"].as_str().unwrap_or_default();
                assert!(got.contains(&note), "event note {got:?} lacks {note:?}");
                assert_eq!(value["reportingInstance"], instance, "event {value}");
                assert_eq!(value["reportingController"], "tinykv-operator");
                send.send_response(resp);
            }
            Expect::ApplyRefused(path, code, message) => {
                apply_path_ok(&req, &path);
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Invalid", "code": code, "message": message});
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).expect("status code"))
                        .body(Body::from(status.to_string().into_bytes()))
                        .expect("response"),
                );
            }
        }
    }
    applied
}

/// Checks an event POST (`reason`, `type_`, about a TinyKVCluster); returns
/// its body and the API server's answer.
async fn event(req: Request<Body>, reason: &str, type_: &str) -> (Value, Response<Body>) {
    assert_eq!(req.method(), Method::POST, "expected event {reason}");
    assert_eq!(
        req.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/db/events"
    );
    let body = req.into_body().collect_bytes().await.expect("body");
    let value: Value = serde_json::from_slice(&body).expect("event is json");
    assert_eq!(value["reason"], reason, "event {value}");
    assert_eq!(value["type"], type_, "event {value}");
    assert_eq!(value["regarding"]["kind"], "TinyKVCluster");
    let resp = Response::builder()
        .body(Body::from(body.to_vec()))
        .expect("response");
    (value, resp)
}

/// The API server's answer to a DELETE.
fn deleted() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
    Response::builder()
        .body(Body::from(status.to_string().into_bytes()))
        .expect("response")
}

/// A reconciler context on a mocked API server and a mock node admin.
/// Pods are addressed as `<pod>:50051` so node scripts stay short.
pub fn test_context(script: Vec<Expect>) -> (Arc<Context>, MockNodeAdmin, Verifier) {
    test_context_with(script, |ctx| ctx)
}

/// [`test_context`] with `adjust` applied to the context.
pub fn test_context_with(
    script: Vec<Expect>,
    adjust: impl FnOnce(Context) -> Context,
) -> (Arc<Context>, MockNodeAdmin, Verifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let nodes = MockNodeAdmin::default();
    let ctx = Context::new(
        client,
        Arc::new(nodes.clone()),
        Arc::new(Metrics::default()),
    )
    .with_address(Arc::new(|_ns: &str, _c: &str, pod: &str, port: i32| {
        format!("{pod}:{port}")
    }));
    let task = tokio::spawn(serve(handle, script));
    (Arc::new(adjust(ctx)), nodes, Verifier { task })
}

/// API paths of the cluster `demo` in namespace `db`.
pub mod paths {
    /// The StatefulSet.
    pub const STS: &str = "/apis/apps/v1/namespaces/db/statefulsets/demo";
    /// The headless Service.
    pub const HEADLESS: &str = "/api/v1/namespaces/db/services/demo-headless";
    /// The client Service.
    pub const CLIENT: &str = "/api/v1/namespaces/db/services/demo";
    /// The PodDisruptionBudget.
    pub const PDB: &str = "/apis/policy/v1/namespaces/db/poddisruptionbudgets/demo";
    /// The NetworkPolicy.
    pub const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/db/networkpolicies/demo";
    /// The cluster-secret Secret the operator creates.
    pub const SECRET: &str = "/api/v1/namespaces/db/secrets/demo-cluster-secret";
    /// Where Secrets are created.
    pub const SECRETS: &str = "/api/v1/namespaces/db/secrets";
    /// A Secret by name.
    pub fn secret(name: &str) -> String {
        format!("{SECRETS}/{name}")
    }
    /// The status subresource.
    pub const STATUS: &str = "/apis/tinykv.io/v1alpha1/namespaces/db/tinykvclusters/demo/status";
    /// A data PVC.
    pub fn pvc(ordinal: i32) -> String {
        format!("/api/v1/namespaces/db/persistentvolumeclaims/data-demo-{ordinal}")
    }
}

/// A recorded call to [`MockNodeAdmin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCall {
    /// `status(addr)`.
    Status(String),
    /// `decommission(addr, node_id)`.
    Decommission(String, String),
}

#[derive(Default)]
struct MockState {
    statuses: HashMap<String, Result<NodeStatus, NodeError>>,
    calls: Vec<NodeCall>,
    proofs: Vec<Option<String>>,
    shown: Vec<(bool, Option<String>)>,
}

/// A signer's fingerprint: its proof of a fixed method at a fixed time, the
/// same for two signers exactly when they have the same caller id and
/// signing secret.
pub fn fingerprint(signer: &Signer) -> String {
    signer.proof("/tinykv.test/Fingerprint", 0)
}

/// The operator's signer for a secret file's text.
pub fn operator_signer(secret_text: &str) -> Signer {
    Signer::new(
        crate::builders::OPERATOR_CALLER,
        Secrets::parse(secret_text).expect("test secret"),
    )
}

/// Scripted [`NodeAdmin`] for tests: answers Status from a table keyed by
/// address and records every call. A Decommission marks the node `leaving`
/// in every scripted view; tests then flip it to `left` with [`MockNodeAdmin::set_state`].
#[derive(Clone, Default)]
pub struct MockNodeAdmin {
    state: Arc<Mutex<MockState>>,
}

impl MockNodeAdmin {
    fn lock(&self) -> std::sync::MutexGuard<'_, MockState> {
        // A panicking test thread poisons the lock; the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Script the answer of `status(addr)`.
    pub fn set_status(&self, addr: &str, status: Result<NodeStatus, NodeError>) {
        self.lock().statuses.insert(addr.to_string(), status);
    }

    /// Set member `node_id`'s state in every scripted view (and its own
    /// `state` in the view it answers itself).
    pub fn set_state(&self, node_id: &str, state: &str) {
        for status in self.lock().statuses.values_mut().flatten() {
            if status.node_id == node_id {
                status.state = state.to_string();
            }
            for m in status.members.iter_mut().filter(|m| m.node_id == node_id) {
                m.state = state.to_string();
            }
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<NodeCall> {
        self.lock().calls.clone()
    }

    /// The [`fingerprint`] of the signer of every call so far, in order
    /// (`None`: an unsigned call).
    pub fn proofs(&self) -> Vec<Option<String>> {
        self.lock().proofs.clone()
    }

    /// For every call so far, in order: whether it came over TLS, and the
    /// client token it carried.
    pub fn shown(&self) -> Vec<(bool, Option<String>)> {
        self.lock().shown.clone()
    }

    /// Only the Decommission calls.
    pub fn decommissions(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                NodeCall::Decommission(a, n) => Some((a, n)),
                NodeCall::Status(_) => None,
            })
            .collect()
    }
}

impl MockState {
    fn record(&mut self, call: NodeCall, creds: &NodeCreds) {
        self.calls.push(call);
        self.proofs.push(creds.signer.as_ref().map(fingerprint));
        self.shown.push((creds.tls.is_some(), creds.token.clone()));
    }
}

impl NodeAdmin for MockNodeAdmin {
    fn status<'a>(
        &'a self,
        addr: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<NodeStatus, NodeError>> {
        let mut st = self.lock();
        st.record(NodeCall::Status(addr.to_string()), creds);
        let answer = st.statuses.get(addr).cloned().unwrap_or_else(|| {
            Err(NodeError::Unreachable {
                addr: addr.to_string(),
                message: "no such mock node".into(),
            })
        });
        Box::pin(async move { answer })
    }

    fn decommission<'a>(
        &'a self,
        addr: &'a str,
        node_id: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<DecommissionProgress, NodeError>> {
        self.lock().record(
            NodeCall::Decommission(addr.to_string(), node_id.to_string()),
            creds,
        );
        self.set_state(node_id, STATE_LEAVING);
        Box::pin(async move {
            Ok(DecommissionProgress {
                state: STATE_LEAVING.to_string(),
                ..DecommissionProgress::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_admin::{NodeMember, STATE_NORMAL};

    #[tokio::test]
    async fn mock_records_and_marks_leaving() {
        let mock = MockNodeAdmin::default();
        mock.set_status(
            "a:1",
            Ok(NodeStatus {
                node_id: "n0".into(),
                members: vec![NodeMember {
                    node_id: "n1".into(),
                    state: STATE_NORMAL.into(),
                    ..NodeMember::default()
                }],
                ..NodeStatus::default()
            }),
        );
        let signer = operator_signer("a-test-secret-0123456789");
        mock.decommission("a:1", "n1", &NodeCreds::signed(signer.clone()))
            .await
            .expect("decommission");
        let none = NodeCreds::default();
        let st = mock.status("a:1", &none).await.expect("status");
        assert_eq!(
            st.member("n1").map(|m| m.state.as_str()),
            Some(STATE_LEAVING)
        );
        assert!(mock.status("b:1", &none).await.is_err());
        assert_eq!(
            mock.decommissions(),
            vec![("a:1".to_string(), "n1".to_string())]
        );
        assert_eq!(mock.calls().len(), 3);
        assert_eq!(mock.proofs(), vec![Some(fingerprint(&signer)), None, None]);
        assert_ne!(
            fingerprint(&signer),
            fingerprint(&operator_signer("another-secret-0123456789"))
        );
    }
}
