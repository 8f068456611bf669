//! The operator's scale-down and scale-up flows against real `tinykv-node`
//! processes on 127.0.0.1 (the `tinykv-tests` cluster helper). Only the
//! Kubernetes API is mocked: a small in-memory API server that checks the
//! shape of every call (server-side apply with the operator's field manager,
//! events, status patches, PVC deletes) and keeps the objects, and a test
//! that plays the StatefulSet controller (starting or killing the node of
//! the highest ordinal when the operator changes the replicas). Node admin
//! calls go through the operator's real [`GrpcNodeAdmin`], so decommission
//! and join move real data.
//!
//! Pods `demo-0..` are the helper's `node1..`: the reconciler context maps
//! them with its address function (pod -> 127.0.0.1 port) and its node-id
//! function (pod -> node id).
//!
//! The operator signs its admin calls with the cluster secret it reads
//! from the cluster's Secret (created by the operator on the first pass);
//! the last test runs nodes that hold that secret and shows that the
//! operator's signed calls work and that unsigned or wrongly signed ones are
//! refused.
//!
//! Needs the node binary: `cargo build -p tinykv-node --features fault-injection`
//! (the Makefile's test target builds every binary first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use tinykv_auth::{generate_secret, Secrets, Signer};
use tinykv_client::Consistency;
use tinykv_operator::crd::{OperationType, Phase, TinyKVCluster, TinyKVClusterSpec};
use tinykv_operator::metrics::Metrics;
use tinykv_operator::node_admin::{
    DecommissionProgress, GrpcNodeAdmin, NodeAdmin, NodeCreds, NodeError, NodeStatus,
};
use tinykv_operator::reconciler::{reconcile, Context};
use tinykv_operator::status::{
    condition, CONDITION_AVAILABLE, CONDITION_DEGRADED, CONDITION_PROGRESSING,
};
use tinykv_operator::TinyKVClusterStatus;
use tinykv_tests::{wait_until, Cluster, ClusterOptions};

const KEYS: usize = 200;
const NS: &str = "db";
const NAME: &str = "demo";
const STS_PATH: &str = "/apis/apps/v1/namespaces/db/statefulsets/demo";
const PVC_PATH: &str = "/api/v1/namespaces/db/persistentvolumeclaims/";
const STATUS_PATH: &str = "/apis/tinykv.io/v1alpha1/namespaces/db/tinykvclusters/demo/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/db/events";
const SECRETS_PATH: &str = "/api/v1/namespaces/db/secrets";
const SECRET_PATH: &str = "/api/v1/namespaces/db/secrets/demo-cluster-secret";
const NETPOL_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/db/networkpolicies/demo";
/// How long any one flow may take before the test fails.
const FLOW_DEADLINE: Duration = Duration::from_secs(90);
/// Pause between reconcile passes while polling (the controller's requeue).
const PASS_INTERVAL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// The mocked Kubernetes API server.
// ---------------------------------------------------------------------------

/// What the fake API server holds and saw.
struct ApiState {
    /// The TinyKVCluster (spec set by the test, status by the operator).
    cluster: TinyKVCluster,
    /// The StatefulSet as last applied, if any.
    sts: Option<Value>,
    sts_generation: i64,
    /// Pods the test says are ready (the kubelet's part).
    ready: i32,
    /// `spec.replicas` of every StatefulSet apply, in order.
    sts_replicas: Vec<i64>,
    /// (reason, type) of every event.
    events: Vec<(String, String)>,
    /// Paths of every DELETE.
    deleted: Vec<String>,
    /// The cluster-secret Secret, if it exists.
    secret: Option<Value>,
    /// Secrets the operator created.
    secrets_created: usize,
    /// Calls the fake did not expect (the test fails on any).
    unexpected: Vec<String>,
}

#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(v.to_string().into_bytes()))
        .expect("response")
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

impl FakeApi {
    fn new(spec: TinyKVClusterSpec) -> Self {
        let mut cluster = TinyKVCluster::new(NAME, spec);
        cluster.metadata = ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NS.into()),
            uid: Some("uid-real-nodes".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        Self {
            state: Arc::new(Mutex::new(ApiState {
                cluster,
                sts: None,
                sts_generation: 0,
                ready: 0,
                sts_replicas: Vec::new(),
                events: Vec::new(),
                deleted: Vec::new(),
                secret: None,
                secrets_created: 0,
                unexpected: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The TinyKVCluster as a watch would deliver it.
    fn cluster(&self) -> TinyKVCluster {
        self.lock().cluster.clone()
    }

    fn status(&self) -> TinyKVClusterStatus {
        self.lock().cluster.status.clone().unwrap_or_default()
    }

    /// `kubectl scale tinykvcluster demo --replicas n`.
    fn scale(&self, n: i32) {
        let mut st = self.lock();
        st.cluster.spec.replicas = n;
        let g = st.cluster.metadata.generation.unwrap_or(1);
        st.cluster.metadata.generation = Some(g + 1);
    }

    fn set_ready(&self, n: i32) {
        self.lock().ready = n;
    }

    /// `spec.replicas` of the stored StatefulSet.
    fn sts_replicas(&self) -> Option<i64> {
        self.lock()
            .sts
            .as_ref()
            .and_then(|s| s["spec"]["replicas"].as_i64())
    }

    fn sts_applies(&self) -> Vec<i64> {
        self.lock().sts_replicas.clone()
    }

    fn events(&self) -> Vec<String> {
        self.lock().events.iter().map(|(r, _)| r.clone()).collect()
    }

    fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// The text of the cluster secret the Secret holds.
    fn secret_text(&self) -> Option<String> {
        let v = self.lock().secret.clone()?;
        let secret: Secret = serde_json::from_value(v).expect("a Secret");
        let bytes = secret.data?.remove("cluster.secret")?;
        Some(String::from_utf8(bytes.0).expect("utf8"))
    }

    /// `kubectl edit secret demo-cluster-secret`: replaces its text.
    fn set_secret_text(&self, text: &str) {
        let mut st = self.lock();
        let v = st.secret.as_mut().expect("the Secret exists");
        let mut secret: Secret = serde_json::from_value(v.clone()).expect("a Secret");
        secret.data = Some(std::collections::BTreeMap::from([(
            "cluster.secret".to_string(),
            k8s_openapi::ByteString(text.as_bytes().to_vec()),
        )]));
        *v = serde_json::to_value(secret).expect("json");
    }

    fn secrets_created(&self) -> usize {
        self.lock().secrets_created
    }

    fn assert_no_unexpected_calls(&self) {
        let st = self.lock();
        assert!(
            st.unexpected.is_empty(),
            "unexpected API calls: {:?}",
            st.unexpected
        );
    }

    /// A kube client on this fake; each client gets its own serving task.
    fn client(&self) -> Client {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(self.clone().serve(handle));
        Client::new(service, "default")
    }

    async fn serve(self, mut handle: Handle) {
        while let Some((req, send)) = handle.next_request().await {
            let resp = self.answer(req).await;
            send.send_response(resp);
        }
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let ctype = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut st = self.lock();
        let call = format!("{method} {path}?{query}");
        if method == Method::PATCH && path != EVENTS_PATH && !path.starts_with(EVENTS_PATH) {
            // Every write of the operator is a forced server-side apply with its field manager.
            if ctype != "application/apply-patch+yaml"
                || !query.contains("fieldManager=tinykv-operator")
                || !query.contains("force=true")
            {
                st.unexpected
                    .push(format!("{call} ({ctype}): not a forced apply"));
                return json_response(StatusCode::BAD_REQUEST, &json!({}));
            }
            if path != STATUS_PATH
                && body["metadata"]["ownerReferences"][0]["kind"] != "TinyKVCluster"
            {
                st.unexpected
                    .push(format!("{call}: no owner reference to the TinyKVCluster"));
            }
        }
        match (&method, path.as_str()) {
            (&Method::GET, STS_PATH) => match &st.sts {
                None => not_found(),
                Some(sts) => {
                    let mut sts = sts.clone();
                    let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
                    let ready = i64::from(st.ready).min(replicas);
                    sts["metadata"]["generation"] = json!(st.sts_generation);
                    sts["status"] = json!({
                        "replicas": replicas,
                        "readyReplicas": ready,
                        "updatedReplicas": replicas,
                        "observedGeneration": st.sts_generation,
                    });
                    json_response(StatusCode::OK, &sts)
                }
            },
            (&Method::PATCH, STS_PATH) => {
                if st.sts.as_ref().map(|s| &s["spec"]) != Some(&body["spec"]) {
                    st.sts_generation += 1;
                }
                st.sts_replicas
                    .push(body["spec"]["replicas"].as_i64().unwrap_or(-1));
                st.sts = Some(body.clone());
                json_response(StatusCode::OK, &body)
            }
            (&Method::PATCH, STATUS_PATH) => {
                match serde_json::from_value::<TinyKVClusterStatus>(body["status"].clone()) {
                    Ok(status) => st.cluster.status = Some(status),
                    Err(e) => st.unexpected.push(format!("{call}: bad status: {e}")),
                }
                let obj = serde_json::to_value(&st.cluster).expect("cluster json");
                json_response(StatusCode::OK, &obj)
            }
            (
                &Method::PATCH,
                "/api/v1/namespaces/db/services/demo-headless"
                | "/api/v1/namespaces/db/services/demo"
                | "/apis/policy/v1/namespaces/db/poddisruptionbudgets/demo",
            ) => json_response(StatusCode::OK, &body),
            // spec.networkPolicy is disabled here: the operator looks for a
            // policy of its own to delete, and there is none.
            (&Method::GET, NETPOL_PATH) => not_found(),
            (&Method::GET, SECRET_PATH) => match &st.secret {
                None => not_found(),
                Some(secret) => json_response(StatusCode::OK, secret),
            },
            (&Method::POST, SECRETS_PATH) => {
                if !query.contains("fieldManager=tinykv-operator") {
                    st.unexpected.push(format!("{call}: no field manager"));
                }
                if body["metadata"]["ownerReferences"][0]["kind"] != "TinyKVCluster" {
                    st.unexpected
                        .push(format!("{call}: no owner reference to the TinyKVCluster"));
                }
                if st.secret.is_some() {
                    return json_response(
                        StatusCode::CONFLICT,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "AlreadyExists", "code": 409, "message": "exists"}),
                    );
                }
                st.secrets_created += 1;
                st.secret = Some(body.clone());
                json_response(StatusCode::CREATED, &body)
            }
            (&Method::POST, EVENTS_PATH) => {
                st.events.push((
                    body["reason"].as_str().unwrap_or_default().to_string(),
                    body["type"].as_str().unwrap_or_default().to_string(),
                ));
                json_response(StatusCode::OK, &body)
            }
            // The event recorder patches a repeated event's series.
            (&Method::PATCH, p) if p.starts_with(EVENTS_PATH) => {
                json_response(StatusCode::OK, &body)
            }
            // A data claim, as the StatefulSet controller makes it: the
            // cluster's labels (the operator deletes no claim without them).
            (&Method::GET, p) if p.starts_with(PVC_PATH) => {
                let name = &p[PVC_PATH.len()..];
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": "db", "uid": format!("uid-{name}"),
                            "labels": {"app.kubernetes.io/name": "tinykv",
                                       "app.kubernetes.io/instance": "demo"}},
                        "spec": {}}),
                )
            }
            (&Method::DELETE, p) if p.starts_with(PVC_PATH) => {
                let uid = format!("uid-{}", &p[PVC_PATH.len()..]);
                if body["preconditions"]["uid"] != uid.as_str() {
                    st.unexpected
                        .push(format!("{call}: no uid precondition in {body}"));
                }
                st.deleted.push(p.to_string());
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                )
            }
            _ => {
                st.unexpected.push(call);
                not_found()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The node side: the real gRPC admin, recording decommissions.
// ---------------------------------------------------------------------------

/// [`GrpcNodeAdmin`] that records every Decommission it sends.
#[derive(Default)]
struct RecordingAdmin {
    inner: GrpcNodeAdmin,
    decommissions: Mutex<Vec<(String, String)>>,
}

impl RecordingAdmin {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: GrpcNodeAdmin::new(Duration::from_secs(3)),
            decommissions: Mutex::new(Vec::new()),
        })
    }

    fn decommissions(&self) -> Vec<(String, String)> {
        self.decommissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl NodeAdmin for RecordingAdmin {
    fn status<'a>(
        &'a self,
        addr: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<NodeStatus, NodeError>> {
        self.inner.status(addr, creds)
    }

    fn decommission<'a>(
        &'a self,
        addr: &'a str,
        node_id: &'a str,
        creds: &'a NodeCreds,
    ) -> BoxFuture<'a, Result<DecommissionProgress, NodeError>> {
        self.decommissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((addr.to_string(), node_id.to_string()));
        self.inner.decommission(addr, node_id, creds)
    }
}

/// Pod name -> 127.0.0.1 address of the helper node playing it.
type Addresses = Arc<Mutex<HashMap<String, String>>>;

fn pod(i: usize) -> String {
    format!("{NAME}-{i}")
}

fn addresses(c: &Cluster) -> Addresses {
    let map = (0..c.nodes.len()).map(|i| (pod(i), c.addr(i))).collect();
    Arc::new(Mutex::new(map))
}

/// A fresh operator: a new kube client on the fake API server, the given
/// node admin, pods mapped to the helper's nodes (`demo-i` is `node{i+1}`).
fn operator(api: &FakeApi, admin: Arc<RecordingAdmin>, addrs: &Addresses) -> Arc<Context> {
    let addrs = addrs.clone();
    let ctx = Context::new(api.client(), admin, Arc::new(Metrics::default()))
        .with_address(Arc::new(
            move |_ns: &str, _c: &str, pod: &str, _port: i32| {
                addrs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(pod)
                    .cloned()
                    // A pod without a process yet: nothing listens on port 1.
                    .unwrap_or_else(|| "127.0.0.1:1".to_string())
            },
        ))
        .with_node_ids(Arc::new(|pod: &str| {
            let ordinal: usize = pod
                .rsplit('-')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or_else(|| panic!("pod name {pod} has no ordinal"));
            format!("node{}", ordinal + 1)
        }));
    Arc::new(ctx)
}

/// One reconcile pass on the cluster as the API server holds it; returns the status after it.
async fn pass(api: &FakeApi, ctx: &Arc<Context>) -> TinyKVClusterStatus {
    reconcile(Arc::new(api.cluster()), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("reconcile failed: {e}"));
    api.assert_no_unexpected_calls();
    api.status()
}

fn cond(s: &TinyKVClusterStatus, t: &str) -> (String, String) {
    let c = condition(s, t).unwrap_or_else(|| panic!("no {t} condition in {s:?}"));
    (c.status.clone(), c.reason.clone())
}

fn is_true(s: &TinyKVClusterStatus, t: &str) -> bool {
    cond(s, t).0 == "True"
}

/// The node's own ring state, straight from the node.
async fn own_state(c: &Cluster, i: usize) -> String {
    c.client_for(i)
        .status()
        .await
        .map(|s| s.state)
        .unwrap_or_else(|e| panic!("status of node{}: {e}", i + 1))
}

/// Create the cluster through the operator and wait until it reports Available.
async fn create(api: &FakeApi, ctx: &Arc<Context>, n: i32) {
    let s = pass(api, ctx).await;
    assert_eq!(
        api.sts_replicas(),
        Some(i64::from(n)),
        "created with {n} pods"
    );
    assert_eq!(s.phase, Some(Phase::Creating));
    // The pods are the already running test nodes.
    api.set_ready(n);
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        let s = pass(api, ctx).await;
        if is_true(&s, CONDITION_AVAILABLE) && s.phase == Some(Phase::Running) {
            assert!(!is_true(&s, CONDITION_PROGRESSING), "{s:?}");
            // Members come back under their pod names.
            let ids: Vec<&str> = s.members.iter().map(|m| m.node_id.as_str()).collect();
            let want: Vec<String> = (0..n as usize).map(pod).collect();
            assert_eq!(ids, want, "members by pod name");
            return;
        }
        assert!(Instant::now() < deadline, "never Available: {s:?}");
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

async fn load(c: &Cluster) {
    let client = c.client();
    for i in 0..KEYS {
        client
            .put(format!("op-{i}"), format!("v{i}"), Consistency::All)
            .await
            .unwrap_or_else(|e| panic!("put op-{i} at ALL: {e}"));
    }
}

/// Every key reads back at ALL through each node in `via`, and each of its
/// owners (per `via[0]`'s ring) holds it locally; no owner is in `gone`.
async fn check_every_key(c: &Cluster, via: &[usize], gone: Option<&str>) {
    for &v in via {
        let client = c.client_for(v);
        for i in 0..KEYS {
            let key = format!("op-{i}");
            let got = client
                .get(key.clone(), Consistency::All)
                .await
                .unwrap_or_else(|e| panic!("{key} at ALL via node{}: {e}", v + 1));
            assert_eq!(
                got.map(|g| g.val),
                Some(format!("v{i}").into_bytes().into()),
                "{key} via node{}",
                v + 1
            );
        }
    }
    for i in 0..KEYS {
        let key = format!("op-{i}");
        let owners = c.owners(via[0], &key).await;
        assert_eq!(owners.len(), 3, "{key}: {owners:?}");
        if let Some(gone) = gone {
            assert!(
                !owners.iter().any(|o| o == gone),
                "{key} still owned by {gone}"
            );
        }
        for o in owners {
            assert_eq!(
                c.local(c.index_of(&o), &key).await,
                Some(format!("v{i}")),
                "{key} missing on its owner {o}"
            );
        }
    }
}

/// Waits until node `via` lists `node` in `state`.
async fn wait_member_state(c: &Cluster, via: usize, node: &str, state: &str) {
    wait_until(
        &format!("node{} to see {node} {state}", via + 1),
        FLOW_DEADLINE,
        || async {
            c.client_for(via)
                .status()
                .await
                .map(|s| {
                    s.members
                        .iter()
                        .any(|m| m.node_id == node && m.state == state)
                })
                .unwrap_or(false)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// Scale-down: 5 -> 4, with an operator restart in the middle.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn scale_down_decommissions_the_highest_ordinal_on_real_nodes_and_resumes_after_restart() {
    let mut c = Cluster::start(5).await;
    load(&c).await;
    let addrs = addresses(&c);
    let api = FakeApi::new(TinyKVClusterSpec {
        replicas: 5,
        ..TinyKVClusterSpec::default()
    });
    let admin = RecordingAdmin::new();
    let ctx = operator(&api, admin.clone(), &addrs);
    create(&api, &ctx, 5).await;

    // Hold node5 in `leaving` until the operator has been restarted: it
    // cannot stream to anyone while partitioned from every peer.
    c.block(4, &["node1", "node2", "node3", "node4"]);
    api.scale(4);

    // Pass 1 records the intent before acting: nothing is decommissioned yet.
    let s = pass(&api, &ctx).await;
    let op = s.operation.clone().expect("scale-down recorded");
    assert_eq!(op.type_, OperationType::ScaleDown);
    assert_eq!((op.node.as_deref(), op.ordinal), (Some("demo-4"), Some(4)));
    assert!(admin.decommissions().is_empty(), "acted before recording");
    assert_eq!(api.sts_replicas(), Some(5));

    // Pass 2: the target reports `normal`, so the operator asks it to leave,
    // through the real gRPC admin, at the address of node5, for node id node5.
    let s = pass(&api, &ctx).await;
    assert_eq!(
        admin.decommissions(),
        vec![(c.addr(4), "node5".to_string())],
        "exactly one decommission, of the highest ordinal"
    );
    assert_eq!(
        api.sts_replicas(),
        Some(5),
        "replicas lowered before the node left"
    );
    assert_eq!(
        cond(&s, CONDITION_PROGRESSING),
        ("True".into(), "ScalingDown".into())
    );
    assert_eq!(own_state(&c, 4).await, "leaving");

    // The operator restarts: a fresh context (new client, new node admin,
    // nothing in memory) continues from the recorded operation.
    drop(ctx);
    let admin2 = RecordingAdmin::new();
    let ctx2 = operator(&api, admin2.clone(), &addrs);
    let s = pass(&api, &ctx2).await;
    let op = s.operation.clone().expect("still scaling down");
    assert_eq!(op.node.as_deref(), Some("demo-4"));
    assert!(
        op.message.contains("leaving"),
        "waits on the target's own state: {}",
        op.message
    );
    assert!(
        admin2.decommissions().is_empty(),
        "decommissioned again after restart"
    );
    assert_eq!(api.sts_replicas(), Some(5));
    assert_eq!(own_state(&c, 4).await, "leaving");

    // Let node5 stream its ranges away; step until the StatefulSet is lowered.
    c.block(4, &[]);
    let deadline = Instant::now() + FLOW_DEADLINE;
    while api.sts_replicas() != Some(4) {
        assert!(
            Instant::now() < deadline,
            "node5 never left: {:?}\n{}",
            api.status(),
            c.log(4)
        );
        tokio::time::sleep(PASS_INTERVAL).await;
        pass(&api, &ctx2).await;
    }
    // Lowered only once node5 itself reports `left` (states only move forward).
    assert_eq!(own_state(&c, 4).await, "left");
    let applies = api.sts_applies();
    let first_four = applies.iter().position(|&r| r == 4).expect("a lowering");
    assert!(
        applies[..first_four].iter().all(|&r| r == 5)
            && applies[first_four..].iter().all(|&r| r == 4),
        "StatefulSet replicas went {applies:?}"
    );
    assert!(
        admin2.decommissions().is_empty(),
        "a second decommission after the restart"
    );
    assert_eq!(admin.decommissions().len(), 1);
    assert_eq!(
        api.deleted(),
        vec!["/api/v1/namespaces/db/persistentvolumeclaims/data-demo-4".to_string()],
        "the removed node's data claim is deleted (whenScaled: Delete)"
    );
    let events = api.events();
    for want in ["ScaleDownStarted", "Decommissioning", "NodeDecommissioned"] {
        assert!(
            events.iter().any(|e| e == want),
            "no {want} event in {events:?}"
        );
    }
    assert_eq!(
        events.iter().filter(|e| *e == "Decommissioning").count(),
        1,
        "{events:?}"
    );

    // The StatefulSet controller deletes pod demo-4.
    c.kill(4);
    api.set_ready(4);
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        let s = pass(&api, &ctx2).await;
        if s.operation.is_none()
            && s.phase == Some(Phase::Running)
            && is_true(&s, CONDITION_AVAILABLE)
        {
            assert_eq!(s.replicas, 4);
            assert_eq!(cond(&s, CONDITION_DEGRADED).0, "False", "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never settled at 4: {s:?}");
        tokio::time::sleep(PASS_INTERVAL).await;
    }
    assert_eq!(api.sts_replicas(), Some(4));

    // The data: every key at ALL from the remaining nodes, none owned by node5.
    for via in 0..4 {
        wait_member_state(&c, via, "node5", "left").await;
    }
    check_every_key(&c, &[0, 1, 2, 3], Some("node5")).await;
    api.assert_no_unexpected_calls();
}

// ---------------------------------------------------------------------------
// Scale-up: 4 -> 5, the new node joins with streaming.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn scale_up_reports_progressing_until_the_new_real_node_has_joined() {
    let mut c = Cluster::start(4).await;
    load(&c).await;
    let addrs = addresses(&c);
    let api = FakeApi::new(TinyKVClusterSpec {
        replicas: 4,
        ..TinyKVClusterSpec::default()
    });
    let admin = RecordingAdmin::new();
    let ctx = operator(&api, admin.clone(), &addrs);
    create(&api, &ctx, 4).await;

    api.scale(5);
    let s = pass(&api, &ctx).await;
    assert_eq!(api.sts_replicas(), Some(5), "replicas raised at once");
    let op = s.operation.clone().expect("scale-up recorded");
    assert_eq!(
        (op.type_, op.from_replicas, op.to_replicas),
        (OperationType::ScaleUp, 4, 5)
    );
    assert_eq!(
        cond(&s, CONDITION_PROGRESSING),
        ("True".into(), "ScalingUp".into())
    );

    // No pod demo-4 yet: still progressing.
    let s = pass(&api, &ctx).await;
    assert!(is_true(&s, CONDITION_PROGRESSING), "{s:?}");

    // The StatefulSet controller starts pod demo-4: node5 with --join (as
    // TINYKV_JOIN=true does in the pod). It starts partitioned from every
    // peer so that it stays `joining` while the operator looks at it; the
    // block file must exist before it starts (helper naming: node<i>.blocked).
    let block5 = c.nodes[0].block_file.with_file_name("node5.blocked");
    std::fs::write(&block5, "node1\nnode2\nnode3\nnode4\n").expect("block file");
    let new = c.add_node(&["--join"]).await;
    assert_eq!((new, c.nodes[new].id.as_str()), (4, "node5"));
    addrs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pod(4), c.addr(4));
    api.set_ready(5);

    // While node5 is joining, the operator reports Progressing, and its
    // status shows demo-4 joining (node5's own answer, through the real admin).
    assert_eq!(own_state(&c, 4).await, "joining");
    for _ in 0..3 {
        let s = pass(&api, &ctx).await;
        assert_eq!(
            cond(&s, CONDITION_PROGRESSING),
            ("True".into(), "ScalingUp".into())
        );
        assert_eq!(s.phase, Some(Phase::Scaling));
        let m = s.members.iter().find(|m| m.node_id == "demo-4");
        assert_eq!(m.map(|m| m.state.as_str()), Some("joining"), "{s:?}");
        assert_eq!(own_state(&c, 4).await, "joining");
    }

    // Let it stream; step until the operator says the scale-up is done.
    c.block(4, &[]);
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        tokio::time::sleep(PASS_INTERVAL).await;
        let s = pass(&api, &ctx).await;
        let state = own_state(&c, 4).await;
        if state == "joining" {
            // Still joining after the pass, so during it: must be progressing.
            assert!(
                is_true(&s, CONDITION_PROGRESSING),
                "done while node5 joins: {s:?}"
            );
        }
        if !is_true(&s, CONDITION_PROGRESSING) {
            assert_eq!(state, "normal", "done before node5 is normal: {s:?}");
            assert_eq!(cond(&s, CONDITION_PROGRESSING).1, "Idle");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scale-up never finished: {s:?}\n{}",
            c.log(4)
        );
    }
    // And then Available, Running, with five normal members.
    let deadline = Instant::now() + FLOW_DEADLINE;
    let s = loop {
        let s = pass(&api, &ctx).await;
        if is_true(&s, CONDITION_AVAILABLE) && s.phase == Some(Phase::Running) {
            break s;
        }
        assert!(Instant::now() < deadline, "never Available at 5: {s:?}");
        tokio::time::sleep(PASS_INTERVAL).await;
    };
    assert!(s.operation.is_none());
    assert_eq!(s.replicas, 5);
    assert_eq!(cond(&s, CONDITION_DEGRADED).0, "False", "{s:?}");
    let states: Vec<(&str, &str)> = s
        .members
        .iter()
        .map(|m| (m.node_id.as_str(), m.state.as_str()))
        .collect();
    assert_eq!(
        states,
        (0..5)
            .map(|i| (
                ["demo-0", "demo-1", "demo-2", "demo-3", "demo-4"][i],
                "normal"
            ))
            .collect::<Vec<_>>()
    );
    let events = api.events();
    for want in ["ScaleUpStarted", "ScaledUp"] {
        assert!(
            events.iter().any(|e| e == want),
            "no {want} event in {events:?}"
        );
    }
    assert!(admin.decommissions().is_empty());
    assert_eq!(api.sts_replicas(), Some(5));

    // The new node streamed real data, and every key reads back at ALL.
    let local = c.client_for(4).status().await.expect("status").local_keys;
    assert!(local > 0, "node5 streamed nothing");
    for via in 0..4 {
        wait_member_state(&c, via, "node5", "normal").await;
    }
    check_every_key(&c, &[0, 4], None).await;
    api.assert_no_unexpected_calls();
}

// ---------------------------------------------------------------------------
// The cluster secret: nodes that hold it, an operator that signs with it.
// ---------------------------------------------------------------------------

fn is_unauthenticated(e: &NodeError) -> bool {
    matches!(e, NodeError::Rpc { code, .. } if code == "Unauthenticated")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_signs_admin_calls_with_the_secret_it_created_and_nodes_refuse_others() {
    // Pass 1 on an empty namespace: the operator creates the Secret (and the
    // StatefulSet whose pods mount it) before any pod exists.
    let api = FakeApi::new(TinyKVClusterSpec {
        replicas: 4,
        ..TinyKVClusterSpec::default()
    });
    let addrs: Addresses = Arc::new(Mutex::new(HashMap::new()));
    let admin = RecordingAdmin::new();
    let ctx = operator(&api, admin.clone(), &addrs);
    let s = pass(&api, &ctx).await;
    assert_eq!(s.phase, Some(Phase::Creating));
    assert_eq!(api.secrets_created(), 1);
    let secret = api.secret_text().expect("the operator created the Secret");
    assert!(Secrets::parse(&secret).is_ok(), "a usable secret file");
    assert!(api.events().iter().any(|e| e == "ClusterSecretCreated"));

    // The pods start with that Secret mounted as their --cluster-secret-file.
    let mut c = Cluster::start_with(
        4,
        ClusterOptions {
            secret: Some(secret.clone()),
            ..ClusterOptions::default()
        },
    )
    .await;
    load(&c).await;
    *addrs.lock().unwrap_or_else(|e| e.into_inner()) =
        (0..4).map(|i| (pod(i), c.addr(i))).collect();
    api.set_ready(4);
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        let s = pass(&api, &ctx).await;
        if is_true(&s, CONDITION_AVAILABLE) && s.phase == Some(Phase::Running) {
            break;
        }
        assert!(Instant::now() < deadline, "never Available: {s:?}");
        tokio::time::sleep(PASS_INTERVAL).await;
    }
    assert_eq!(
        api.secrets_created(),
        1,
        "an existing Secret is never recreated"
    );

    // The nodes refuse an Admin call without the secret, or with another one.
    let grpc = GrpcNodeAdmin::new(Duration::from_secs(3));
    let err = grpc
        .decommission(&c.addr(3), "node4", &NodeCreds::default())
        .await
        .expect_err("an unsigned decommission");
    assert!(is_unauthenticated(&err), "{err:?}");
    let stranger = Signer::new(
        "operator",
        Secrets::parse(&generate_secret()).expect("secret"),
    );
    let err = grpc
        .decommission(&c.addr(3), "node4", &NodeCreds::signed(stranger))
        .await
        .expect_err("a decommission signed with another secret");
    assert!(is_unauthenticated(&err), "{err:?}");
    assert_eq!(own_state(&c, 3).await, "normal");

    // Scale 4 -> 3 while the Secret holds a secret the nodes do not know:
    // the operator's decommission is refused and the pass fails.
    let wrong = format!("{}\n", generate_secret());
    api.set_secret_text(&wrong);
    api.scale(3);
    let s = pass(&api, &ctx).await;
    assert_eq!(
        s.operation.as_ref().map(|o| o.type_),
        Some(OperationType::ScaleDown)
    );
    let err = reconcile(Arc::new(api.cluster()), ctx.clone())
        .await
        .expect_err("decommission with the wrong secret");
    assert!(
        matches!(&err, tinykv_operator::Error::Node(e) if is_unauthenticated(e)),
        "{err:?}"
    );
    assert_eq!(admin.decommissions().len(), 1);
    assert_eq!(
        own_state(&c, 3).await,
        "normal",
        "a refused call did nothing"
    );

    // Rotation as the docs describe it: the Secret gets "new\nold" lines.
    // The operator signs with the first line, which the nodes do not hold
    // yet, so calls are refused until the nodes re-read their file...
    api.set_secret_text(&format!("{}{}", wrong, secret));
    assert!(reconcile(Arc::new(api.cluster()), ctx.clone())
        .await
        .is_err());
    // ... which they do on SIGHUP (kubelet has refreshed the mounted file).
    let file = c.secret_file().expect("secret file");
    std::fs::write(&file, format!("{}{}", wrong, secret)).expect("rotate the file");
    for i in 0..4 {
        c.hangup(i);
    }
    // Now the operator's signed decommission is accepted; step until done.
    let deadline = Instant::now() + FLOW_DEADLINE;
    loop {
        match reconcile(Arc::new(api.cluster()), ctx.clone()).await {
            Ok(_) => {}
            Err(e) => assert!(
                Instant::now() < deadline,
                "the nodes never accepted the rotated secret: {e}"
            ),
        }
        api.assert_no_unexpected_calls();
        if api.sts_replicas() == Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node4 never left: {:?}\n{}",
            api.status(),
            c.log(3)
        );
        tokio::time::sleep(PASS_INTERVAL).await;
    }
    assert_eq!(own_state(&c, 3).await, "left");
    assert!(
        admin
            .decommissions()
            .iter()
            .all(|d| d == &(c.addr(3), "node4".to_string())),
        "{:?}",
        admin.decommissions()
    );
    c.kill(3);
    api.set_ready(3);
    for via in 0..3 {
        wait_member_state(&c, via, "node4", "left").await;
    }
    check_every_key(&c, &[0, 1, 2], Some("node4")).await;
    assert_eq!(api.secrets_created(), 1);
    api.assert_no_unexpected_calls();
}
