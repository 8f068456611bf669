//! What a command needs before it runs: credentials, certificates, the
//! node to talk to, and the value to write.

use std::io::{IsTerminal, Read};

use bytes::Bytes;
use tinykv_client::auth::tls::ClientTls;
use tinykv_client::auth::{load_token, write_bundle, Bundle, Secrets, Signer};
use tinykv_client::{Client, ClientOptions, RoutingPolicy};

use crate::args::Cli;
use crate::Failure;

/// The largest value read from stdin (the node's own limit is lower; a
/// larger one is refused here rather than read into memory).
const MAX_STDIN_VALUE: u64 = 64 << 20;

/// The client's options from the flags: one operation per process, plain
/// RPCs, as the original client sent.
pub fn options(cli: &Cli) -> Result<ClientOptions, Failure> {
    Ok(ClientOptions {
        timeout: cli.timeout,
        coalesce: false,
        routing: RoutingPolicy::RoundRobin,
        admin_signer: admin_signer(cli.cluster_secret_file.as_deref())?,
        tls: client_tls(cli)?,
        token: token(cli.token_file.as_deref())?,
        ..ClientOptions::default()
    })
}

/// The node address(es) given.
pub fn addr(cli: &Cli) -> Result<String, Failure> {
    cli.addr
        .clone()
        .ok_or_else(|| Failure(2, "the node address <ADDR> is missing".into()))
}

/// The signer of admin calls, from `--cluster-secret-file`.
pub fn admin_signer(path: Option<&std::path::Path>) -> Result<Option<Signer>, Failure> {
    path.map(|p| {
        Secrets::load(p)
            .map(|s| Signer::new("admin", s))
            .map_err(|e| Failure(2, e.to_string()))
    })
    .transpose()
}

/// The TLS settings from `--tls-ca`, `--tls-cert` and `--tls-key`.
pub fn client_tls(cli: &Cli) -> Result<Option<ClientTls>, Failure> {
    ClientTls::from_flags(
        cli.tls_ca.as_deref(),
        cli.tls_cert.as_deref(),
        cli.tls_key.as_deref(),
    )
    .map_err(|e| Failure(2, e.to_string()))
}

/// The first token of `--token-file`.
pub fn token(path: Option<&std::path::Path>) -> Result<Option<String>, Failure> {
    path.map(|p| {
        load_token(p).map_err(|e| Failure(2, e.to_string().replace("cluster secret", "token")))
    })
    .transpose()
}

/// `certs`: writes a CA and the certificates asked for.
pub fn certs(out: &std::path::Path, nodes: &[String], clients: &[String]) -> Result<(), Failure> {
    if nodes.is_empty() && clients.is_empty() {
        return Err(Failure(
            2,
            "certs: name at least one --node ID[=HOST,...] or --client NAME".into(),
        ));
    }
    let nodes = nodes
        .iter()
        .map(|spec| {
            let (id, hosts) = spec.split_once('=').unwrap_or((spec, ""));
            std::iter::once(id)
                .chain(hosts.split(',').filter(|h| !h.is_empty()))
                .map(str::to_string)
                .collect()
        })
        .collect();
    let bundle = Bundle {
        nodes,
        clients: clients.to_vec(),
    };
    let written = write_bundle(out, &bundle).map_err(|e| Failure(4, e.to_string()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// A client of the first node of `addrs` (comma-separated) that answers;
/// a single address is used as given (the original tool's behaviour).
pub async fn connect(addrs: &str, opts: ClientOptions) -> Result<Client, Failure> {
    let list: Vec<&str> = addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if list.len() <= 1 {
        return Ok(Client::connect_many(list, opts)?);
    }
    let mut last = None;
    for addr in &list {
        let client = Client::connect_many([*addr], opts.clone())?;
        match client.health().await {
            Ok(_) => return Ok(client),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(Failure(
        3,
        format!(
            "no node of {addrs} could be reached (last: {})",
            last.unwrap_or_default()
        ),
    ))
}

/// The value to write: `-` reads every byte of stdin, anything else is
/// the value itself.
pub fn value(arg: String) -> Result<Bytes, Failure> {
    if arg != "-" {
        return Ok(Bytes::from(arg));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the value from stdin (end with Ctrl-D)");
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN_VALUE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure(4, format!("reading the value from stdin: {e}")))?;
    if buf.len() as u64 > MAX_STDIN_VALUE {
        return Err(Failure(
            2,
            format!("the value on stdin is over {MAX_STDIN_VALUE} bytes"),
        ));
    }
    Ok(Bytes::from(buf))
}
