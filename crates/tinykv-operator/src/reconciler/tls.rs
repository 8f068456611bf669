//! `spec.tls` as the reconciler handles it: the operator's CA (created
//! once), the node-certificates Secret the pods mount (signed here, or
//! gathered from the Secrets of cert-manager `Certificate`s applied here),
//! and what the operator itself shows the nodes when it calls them.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::ResourceExt;
use tinykv_auth::tls::ClientTls;
use tinykv_auth::{Authority, Role};

use super::{apply, Context};
use crate::builders::{
    build_ca_secret, build_gathered_nodes_secret, build_node_certificate,
    build_operator_certificate, build_signed_nodes_secret, ca_from_secret, certificate_resource,
    client_auth, client_token_ref, generate_ca, node_certificate_name, operator_certificate_name,
    operator_signs, secret_text, tls_ca_secret_name, tls_enabled, tls_nodes_secret_name,
    CA_CERT_KEY, CERT_MANAGER_CERT_KEY, CERT_MANAGER_KEY_KEY, FIELD_MANAGER, OPERATOR_CLIENT_NAME,
};
use crate::crd::{ClientAuthMode, TinyKVCluster};
use crate::plan::PlannedEvent;
use crate::{Error, Result};

/// Event reason when the operator made a cluster's CA.
pub const REASON_TLS_CA_CREATED: &str = "TlsCaCreated";
/// Event reason when it signed node certificates (new cluster or new ordinals).
pub const REASON_TLS_ISSUED: &str = "TlsCertificatesIssued";
/// Event reason while cert-manager has not issued every certificate yet.
pub const REASON_TLS_PENDING: &str = "TlsCertificatesPending";

/// What `spec.tls` gives the reconciler.
#[derive(Default)]
pub(super) struct TlsReady {
    /// How the operator dials the nodes (`None`: plaintext).
    pub client: Option<ClientTls>,
    /// The client token it sends (`clientAuth: token`).
    pub token: Option<String>,
    /// Events to publish.
    pub events: Vec<PlannedEvent>,
    /// Certificates cert-manager has not issued yet (pods, or `operator`):
    /// the StatefulSet waits for them.
    pub waiting: Vec<String>,
}

fn event(reason: &'static str, note: String) -> PlannedEvent {
    PlannedEvent {
        warning: false,
        reason,
        action: "Reconcile",
        note,
    }
}

fn tls_err(e: tinykv_auth::TlsError) -> Error {
    Error::Tls(e.to_string())
}

/// Makes sure every certificate of ordinals `0..ordinals` exists (nothing
/// at all without `spec.tls.enabled`) and says how to call the nodes.
pub(super) async fn ensure_tls(
    cluster: &TinyKVCluster,
    ctx: &Context,
    ns: &str,
    ordinals: i32,
) -> Result<TlsReady> {
    if !tls_enabled(cluster) {
        return Ok(TlsReady::default());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let (ca_pem, identity, mut ready) = if operator_signs(cluster) {
        signed_by_operator(cluster, &secrets, ordinals).await?
    } else {
        issued_by_cert_manager(cluster, ctx, &secrets, ns, ordinals).await?
    };
    if ready.waiting.is_empty() {
        let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        ready.client = Some(ClientTls::from_pem(&ca_pem, identity).map_err(tls_err)?);
    }
    ready.token = client_token(cluster, &secrets, ns).await?;
    Ok(ready)
}

type Identity = Option<(String, String)>;

/// The operator's CA (made and kept the first time) and the node
/// certificates it signs.
async fn signed_by_operator(
    cluster: &TinyKVCluster,
    secrets: &Api<Secret>,
    ordinals: i32,
) -> Result<(String, Identity, TlsReady)> {
    let name = cluster.name_any();
    let mut ready = TlsReady::default();
    let ca_name = tls_ca_secret_name(&name);
    let ca = match secrets.get_opt(&ca_name).await? {
        Some(found) => ca_from_secret(&found)?,
        None => {
            let (ca, created) = create_ca(cluster, secrets, &ca_name).await?;
            if created {
                let note = format!("created Secret {ca_name} holding the cluster's CA");
                ready.events.push(event(REASON_TLS_CA_CREATED, note));
            }
            ca
        }
    };
    let existing = secrets.get_opt(&tls_nodes_secret_name(&name)).await?;
    let (nodes, issued) = build_signed_nodes_secret(cluster, &ca, ordinals, existing.as_ref())?;
    if !issued.is_empty() {
        apply(secrets, &nodes).await?;
        let note = format!("signed the certificates of {}", issued.join(", "));
        ready.events.push(event(REASON_TLS_ISSUED, note));
    }
    // The operator's own client certificate lives in memory only: it can
    // sign another whenever it needs one.
    let identity = match client_auth(cluster) {
        ClientAuthMode::Cert => {
            let issued = ca
                .issue(&[OPERATOR_CLIENT_NAME.to_string()], Role::Client)
                .map_err(tls_err)?;
            Some((issued.cert_pem, issued.key_pem))
        }
        _ => None,
    };
    Ok((ca.cert_pem().to_string(), identity, ready))
}

/// A new CA in Secret `name`; when someone created it between the read and
/// the create, theirs (and `false`).
async fn create_ca(
    cluster: &TinyKVCluster,
    secrets: &Api<Secret>,
    name: &str,
) -> Result<(Authority, bool)> {
    let ca = generate_ca(cluster)?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match secrets
        .create(&params, &build_ca_secret(cluster, &ca)?)
        .await
    {
        Ok(_) => Ok((ca, true)),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Ok((ca_from_secret(&secrets.get(name).await?)?, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// cert-manager's certificates: a Certificate applied per pod (and for the
/// operator with `clientAuth: cert`), their Secrets gathered into the
/// node-certificates Secret.
async fn issued_by_cert_manager(
    cluster: &TinyKVCluster,
    ctx: &Context,
    secrets: &Api<Secret>,
    ns: &str,
    ordinals: i32,
) -> Result<(String, Identity, TlsReady)> {
    let name = cluster.name_any();
    let certs: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &certificate_resource());
    let mut issued = Vec::new();
    for ordinal in 0..ordinals {
        apply(&certs, &build_node_certificate(cluster, ordinal)?).await?;
        issued.push(
            secrets
                .get_opt(&node_certificate_name(&name, ordinal))
                .await?,
        );
    }
    let (nodes, mut waiting) = build_gathered_nodes_secret(cluster, &issued)?;
    let existing = secrets.get_opt(&tls_nodes_secret_name(&name)).await?;
    if existing.and_then(|s| s.data) != nodes.data {
        apply(secrets, &nodes).await?;
    }
    let identity = match client_auth(cluster) {
        ClientAuthMode::Cert => {
            apply(&certs, &build_operator_certificate(cluster)?).await?;
            let found = secrets.get_opt(&operator_certificate_name(&name)).await?;
            let pair = found.as_ref().and_then(|s| {
                let cert = secret_text(s, CERT_MANAGER_CERT_KEY)?;
                let key = secret_text(s, CERT_MANAGER_KEY_KEY)?;
                Some((cert.to_string(), key.to_string()))
            });
            if pair.is_none() {
                waiting.push(OPERATOR_CLIENT_NAME.to_string());
            }
            pair
        }
        _ => None,
    };
    let mut ready = TlsReady::default();
    if !waiting.is_empty() {
        let note = format!("waiting for cert-manager to issue: {}", waiting.join(", "));
        ready.events.push(event(REASON_TLS_PENDING, note));
    }
    ready.waiting = waiting;
    let ca = secret_text(&nodes, CA_CERT_KEY)
        .unwrap_or_default()
        .to_string();
    Ok((ca, identity, ready))
}

/// The first token of the client-token Secret (`clientAuth: token`): the
/// operator's Status calls are client-plane calls.
async fn client_token(
    cluster: &TinyKVCluster,
    secrets: &Api<Secret>,
    ns: &str,
) -> Result<Option<String>> {
    let Some(wanted) = client_token_ref(cluster) else {
        return Ok(None);
    };
    let unusable = |why: &str| {
        Error::Tls(format!(
            "client tokens: Secret {ns}/{} key {:?}: {why}",
            wanted.name, wanted.key
        ))
    };
    let secret = secrets
        .get_opt(&wanted.name)
        .await?
        .ok_or_else(|| unusable("no such Secret"))?;
    let text = secret_text(&secret, &wanted.key).ok_or_else(|| unusable("no such key"))?;
    let tokens = tinykv_auth::Secrets::parse(text).map_err(|e| unusable(&e))?;
    Ok(Some(String::from_utf8_lossy(tokens.signing()).into_owned()))
}
