//! gRPC server reflection on a live node: every service is listed, and the
//! descriptors come back, so grpcurl needs no .proto files.

use tinykv_tests::Cluster;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn ask(addr: &str, request: MessageRequest) -> MessageResponse {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("address")
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection call")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    answer.message_response.expect("a response")
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_every_service_and_serves_its_descriptors() {
    let c = Cluster::start(1).await;
    let MessageResponse::ListServicesResponse(list) =
        ask(&c.addr(0), MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "tinykv.TinyKV",
        "tinykv.Admin",
        "tinykv.internal.Peer",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let answer = ask(
        &c.addr(0),
        MessageRequest::FileContainingSymbol("tinykv.TinyKV".into()),
    )
    .await;
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("no descriptor for tinykv.TinyKV: {answer:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
