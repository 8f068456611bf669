//! Test helpers: a mocked API server that asserts each call in order
//! (the kube-rs controller-rs `ApiServerVerifier` pattern on `tower-test`).
//!
//! A test lists the calls it expects with [`Expect`]; the verifier answers
//! them one by one and fails on any difference. When the list is exhausted
//! the mock is dropped, so an unexpected extra call makes the reconciler fail.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::node_admin::MockNodeAdmin;
use crate::reconciler::Context;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected API call.
pub enum Expect {
    /// GET of `path`, answered with the object or with 404.
    Get(String, Option<Value>),
    /// Server-side apply (PATCH, apply-patch content type, our field manager,
    /// force) of `path`; the closure checks the body.
    Apply(String, Box<dyn FnOnce(&Value) + Send>),
    /// DELETE of `path`.
    Delete(String),
    /// An event with this reason and type (`Normal` or `Warning`).
    Event(&'static str, &'static str),
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
            Expect::Delete(path) => {
                assert_eq!((method, uri.path()), (Method::DELETE, path.as_str()));
                let status =
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
                send.send_response(
                    Response::builder()
                        .body(Body::from(status.to_string().into_bytes()))
                        .expect("response"),
                );
            }
            Expect::Event(reason, type_) => {
                assert_eq!(method, Method::POST, "expected event {reason}");
                assert_eq!(uri.path(), "/apis/events.k8s.io/v1/namespaces/db/events");
                let body = req.into_body().collect_bytes().await.expect("body");
                let value: Value = serde_json::from_slice(&body).expect("event is json");
                assert_eq!(value["reason"], reason, "event {value}");
                assert_eq!(value["type"], type_, "event {value}");
                assert_eq!(value["regarding"]["kind"], "TinyKVCluster");
                send.send_response(
                    Response::builder()
                        .body(Body::from(body.to_vec()))
                        .expect("response"),
                );
            }
        }
    }
    applied
}

/// A reconciler context on a mocked API server and a mock node admin.
/// Pods are addressed as `<pod>:50051` so node scripts stay short.
pub fn test_context(script: Vec<Expect>) -> (Arc<Context>, MockNodeAdmin, Verifier) {
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
    (Arc::new(ctx), nodes, Verifier { task })
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
    /// The status subresource.
    pub const STATUS: &str = "/apis/tinykv.io/v1alpha1/namespaces/db/tinykvclusters/demo/status";
    /// A data PVC.
    pub fn pvc(ordinal: i32) -> String {
        format!("/api/v1/namespaces/db/persistentvolumeclaims/data-demo-{ordinal}")
    }
}
