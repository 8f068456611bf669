//! Lease takeover against a small in-memory Lease API (GET, create, and
//! PATCH by apply or strategic merge, as `kube-lease-manager` sends them):
//! unlike the scripted verifier of `fixtures.rs`, it keeps the Lease's
//! state, so two electors can compete for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

use super::*;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/lead";
/// Lease duration of the electors: renewed 1 s before it runs out.
const DURATION: Duration = Duration::from_secs(3);

type Lease = Arc<Mutex<Option<Value>>>;

/// Set to make the fake API server answer every call with 503.
type Outage = Arc<std::sync::atomic::AtomicBool>;

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "code": code, "message": reason});
    Response::builder()
        .status(StatusCode::from_u16(code).expect("code"))
        .body(Body::from(body.to_string().into_bytes()))
        .expect("response")
}

fn object(v: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(v.to_string().into_bytes()))
        .expect("response")
}

/// Merges `patch.spec` into the stored Lease (a `null` removes the field).
fn merge(stored: &mut Value, patch: &Value) {
    let version = stored["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    if stored.get("spec").is_none_or(Value::is_null) {
        stored["spec"] = json!({});
    }
    for (k, v) in patch["spec"].as_object().into_iter().flatten() {
        let spec = stored["spec"].as_object_mut().expect("spec object");
        if v.is_null() {
            spec.remove(k);
        } else {
            spec.insert(k.clone(), v.clone());
        }
    }
}

async fn answer(lease: &Lease, req: Request<Body>) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let body = req.into_body().collect_bytes().await.expect("body");
    let mut stored = lease.lock().unwrap_or_else(|e| e.into_inner());
    match (method, path.as_str()) {
        (Method::GET, LEASE) => match stored.as_ref() {
            Some(v) => object(v),
            None => status(404, "NotFound"),
        },
        (Method::POST, LEASES) if stored.is_some() => status(409, "AlreadyExists"),
        (Method::POST, LEASES) => {
            let mut v: Value = serde_json::from_slice(&body).expect("lease json");
            v["metadata"]["resourceVersion"] = json!("1");
            *stored = Some(v.clone());
            object(&v)
        }
        (Method::PATCH, LEASE) => match stored.as_mut() {
            Some(v) => {
                let patch: Value = serde_yaml::from_slice(&body).expect("patch");
                merge(v, &patch);
                object(v)
            }
            None => status(404, "NotFound"),
        },
        (m, p) => panic!("unexpected call {m} {p}"),
    }
}

/// A client whose API server holds one Lease in memory.
fn lease_api() -> (Client, Lease) {
    let (client, lease, _) = lease_api_with_outage();
    (client, lease)
}

/// [`lease_api`], and a switch that makes the API server unavailable.
fn lease_api_with_outage() -> (Client, Lease, Outage) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let lease: Lease = Arc::default();
    let outage: Outage = Arc::default();
    let (state, down) = (lease.clone(), outage.clone());
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                send.send_response(status(503, "ServiceUnavailable"));
                continue;
            }
            send.send_response(answer(&state, req).await);
        }
    });
    (Client::new(service, "ops"), lease, outage)
}

fn holder(lease: &Lease) -> Option<String> {
    let stored = lease.lock().unwrap_or_else(|e| e.into_inner());
    stored.as_ref()?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

async fn start(client: &Client, identity: &str) -> Leadership {
    Leadership::start(client.clone(), "ops", "lead", identity, DURATION)
        .await
        .expect("elector starts")
}

#[tokio::test]
async fn a_replica_takes_over_the_lease_of_one_that_stopped_renewing() {
    let (client, lease) = lease_api();
    let (_stop_tx, stop) = watch::channel(false);
    let mut a = start(&client, "op-a").await;
    let got = tokio::time::timeout(Duration::from_secs(10), a.acquire(&stop)).await;
    assert!(
        matches!(got, Ok(Ok(true))),
        "the first replica takes the free lease"
    );
    assert_eq!(holder(&lease).as_deref(), Some("op-a"));

    let mut b = start(&client, "op-b").await;
    // While the first renews, the second waits, past a whole lease duration.
    let early = tokio::time::timeout(DURATION + Duration::from_secs(2), b.acquire(&stop)).await;
    assert!(early.is_err(), "the lease was taken from a live holder");
    assert!(a.is_leader());

    // The first replica dies without handing the lease back.
    a.task.abort();
    let got = tokio::time::timeout(DURATION * 4, b.acquire(&stop)).await;
    assert!(
        matches!(got, Ok(Ok(true))),
        "the second replica takes over after expiry"
    );
    assert_eq!(holder(&lease).as_deref(), Some("op-b"));
    b.release().await;
    assert_eq!(holder(&lease), None, "released on shutdown");
}

#[tokio::test]
async fn a_released_lease_passes_to_the_other_replica() {
    let (client, lease) = lease_api();
    let (_stop_tx, stop) = watch::channel(false);
    let mut a = start(&client, "op-a").await;
    assert!(a.acquire(&stop).await.expect("election runs"));
    let (lost_tx, _lost) = watch::channel(false);
    a.stop_on_loss(stop.clone(), lost_tx);
    let mut b = start(&client, "op-b").await;
    a.release().await;
    assert_eq!(holder(&lease), None, "handed back before release returns");
    // The waiting elector looks again when the lease it last saw would end.
    let got = tokio::time::timeout(DURATION * 3, b.acquire(&stop)).await;
    assert!(matches!(got, Ok(Ok(true))));
    assert_eq!(holder(&lease).as_deref(), Some("op-b"));
}

#[tokio::test]
async fn a_holder_whose_lease_is_taken_stops() {
    let (client, lease) = lease_api();
    let (_stop_tx, stop) = watch::channel(false);
    let mut a = start(&client, "op-a").await;
    assert!(a.acquire(&stop).await.expect("election runs"));
    let (lost_tx, mut lost) = watch::channel(false);
    a.stop_on_loss(stop.clone(), lost_tx);
    // Another holder appears (a forced takeover, or a partition healed).
    {
        let mut stored = lease.lock().unwrap_or_else(|e| e.into_inner());
        let spec = &mut stored.as_mut().expect("lease")["spec"];
        spec["holderIdentity"] = json!("intruder");
        spec["renewTime"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
        spec["leaseDurationSeconds"] = json!(60);
    }
    let fired = tokio::time::timeout(DURATION * 3, lost.wait_for(|l| *l)).await;
    assert!(
        matches!(fired, Ok(Ok(_))),
        "the old holder must stop acting as leader"
    );
    assert!(!a.is_leader());
}

#[tokio::test]
async fn a_holder_cut_off_from_the_api_server_stops() {
    let (client, _lease, outage) = lease_api_with_outage();
    let (_stop_tx, stop) = watch::channel(false);
    let mut a = start(&client, "op-a").await;
    assert!(a.acquire(&stop).await.expect("election runs"));
    let (lost_tx, mut lost) = watch::channel(false);
    a.stop_on_loss(stop.clone(), lost_tx);
    // It can no longer renew: its first failed renewal (a third of the
    // lease before it runs out) must stop it, within about a lease.
    outage.store(true, std::sync::atomic::Ordering::SeqCst);
    let fired =
        tokio::time::timeout(DURATION + Duration::from_secs(1), lost.wait_for(|l| *l)).await;
    assert!(
        matches!(fired, Ok(Ok(_))),
        "a replica that cannot renew must stop acting as leader"
    );
}
