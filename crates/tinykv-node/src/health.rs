//! What the gRPC health service says about this node besides "running":
//! a node whose storage refuses writes (a failed journal write or fsync,
//! see `Engine::failure`) reports NOT_SERVING, so Kubernetes' probes,
//! Docker's healthcheck and load balancers take it out until it is
//! restarted, instead of it answering every write with an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinykv_proto::tinykv::tiny_kv_server::TinyKvServer;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use tokio_util::sync::CancellationToken;

use crate::service::client::ClientService;
use crate::storage::{Engine, Store};

/// How often the storage's state is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Marks the node NOT_SERVING (the whole server and the TinyKV service)
/// once `engine` reports a failure; true if it did so now. `reported`
/// keeps it to one transition and one log line.
pub async fn check_storage(
    engine: &dyn Engine,
    health: &HealthReporter,
    reported: &AtomicBool,
) -> bool {
    let Some(why) = engine.failure() else {
        return false;
    };
    if reported.swap(true, Ordering::AcqRel) {
        return false;
    }
    tracing::error!(reason = %why, "storage failed: reporting NOT_SERVING until restarted");
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<TinyKvServer<ClientService>>()
        .await;
    true
}

/// The background loop running [`check_storage`] until shutdown.
pub fn watch_storage(
    store: Store,
    health: HealthReporter,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let reported = Arc::new(AtomicBool::new(false));
    crate::background::every(shutdown, "storage-health", CHECK_EVERY, move || {
        let (engine, health, reported) = (store.engine().clone(), health.clone(), reported.clone());
        async move {
            check_storage(engine.as_ref(), &health, &reported).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{health_check_response::ServingStatus as Wire, HealthCheckRequest};

    use super::*;
    use crate::storage::{FjallEngine, StorageError, WriteOp};

    /// The health service's answer for `service`, over real gRPC.
    async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        client.check(req).await.unwrap().into_inner().status
    }

    #[tokio::test]
    async fn a_failed_engine_turns_the_node_not_serving_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path()).unwrap();
        let (health, svc) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        health.set_serving::<TinyKvServer<ClientService>>().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        let server = tokio::spawn(server);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let svc = &mut client;
        let reported = AtomicBool::new(false);
        let kv = "tinykv.TinyKV";

        assert!(!check_storage(&engine, &health, &reported).await);
        assert_eq!(status(svc, "").await, Wire::Serving as i32);

        engine.inject_failure("fsync journal: EIO");
        assert!(check_storage(&engine, &health, &reported).await);
        assert_eq!(status(svc, "").await, Wire::NotServing as i32);
        assert_eq!(status(svc, kv).await, Wire::NotServing as i32);
        assert!(!check_storage(&engine, &health, &reported).await, "once");

        // The engine refuses writes and flushes, naming the first failure.
        let op = WriteOp::Put {
            key: bytes::Bytes::from_static(b"k"),
            record: crate::version::Record::tombstone(1, "n1"),
        };
        let err = engine.apply(&[op], false).unwrap_err();
        assert!(
            matches!(&err, StorageError::Engine(m) if m.contains("EIO") && m.contains("restart")),
            "{err}"
        );
        assert!(engine.flush().is_err());
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
