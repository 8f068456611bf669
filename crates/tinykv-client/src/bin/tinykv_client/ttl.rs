//! `expire`, `persist` and `ttl`.

use serde_json::json;
use tinykv_client::{Client, Consistency, Expiry, KeyTtl};

use crate::{print, Failure};

/// `expire` (a new expiry) or `persist` (`Expiry::Never`).
pub async fn expire(
    client: &Client,
    key: String,
    expiry: Expiry,
    level: Consistency,
    json: bool,
) -> Result<(), Failure> {
    let done = client.expire(key.clone(), expiry, level).await?;
    if json {
        print::json(json!({ "key": key, "found": done }));
    } else if done {
        println!("OK");
    }
    if !done {
        return Err(Failure(1, "not found".into()));
    }
    Ok(())
}

/// `ttl`: the remaining time in milliseconds, `none`, or exit 1.
pub async fn show(
    client: &Client,
    key: String,
    level: Consistency,
    json: bool,
) -> Result<(), Failure> {
    let ttl = client.ttl(key.clone(), level).await?;
    let (found, ms) = match ttl {
        KeyTtl::Missing => (false, None),
        KeyTtl::Persistent => (true, None),
        KeyTtl::Remaining(d) => (true, Some(d.as_millis() as u64)),
    };
    if json {
        print::json(json!({ "key": key, "found": found, "ttl_remaining_ms": ms }));
    } else if found {
        match ttl {
            KeyTtl::Remaining(d) => println!("{}", humantime::format_duration(d)),
            _ => println!("none"),
        }
    }
    if !found {
        return Err(Failure(1, "not found".into()));
    }
    Ok(())
}
