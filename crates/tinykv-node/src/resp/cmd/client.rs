//! `CLIENT ID | SETNAME name | GETNAME | SETINFO attr value`.

use bytes::Bytes;

use super::printable;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

/// `CLIENT subcommand ...`.
pub fn client(args: Vec<Bytes>, session: &mut Session) -> Reply {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("id", 2) => Reply::Int(session.id as i64),
        ("getname", 2) => session.name.clone().map_or(Reply::Null, Reply::Bulk),
        ("setname", 3) => match checked_name(&args[2]) {
            Ok(name) => {
                session.name = name;
                Reply::OK
            }
            Err(e) => e,
        },
        // Client libraries announce themselves; nothing to keep.
        ("setinfo", 4) => Reply::OK,
        ("id" | "getname" | "setname" | "setinfo", _) => Reply::err(format!(
            "wrong number of arguments for 'client|{sub}' command"
        )),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CLIENT ID, SETNAME, GETNAME or SETINFO.",
            printable(&args[1])
        )),
    }
}

/// A connection name: printable ASCII without spaces (as Redis demands);
/// empty clears it.
fn checked_name(name: &Bytes) -> Result<Option<Bytes>, Reply> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.len() > 256 || name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(Some(name.clone()))
}
