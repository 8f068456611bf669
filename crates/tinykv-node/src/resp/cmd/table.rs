//! Every command the RESP door knows: its arity (Redis's convention: `n`
//! exactly, `-n` at least), flags and key positions for `COMMAND`, and a
//! summary for `COMMAND DOCS`.

/// One command's description.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub group: &'static str,
    pub summary: &'static str,
}

impl Spec {
    /// Whether `n` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i64;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        summary,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// The commands, by name.
pub static COMMANDS: &[Spec] = &[
    spec(
        "ping",
        -1,
        &["fast", "stale"],
        NO_KEYS,
        "connection",
        "Returns PONG, or the argument given.",
    ),
    spec(
        "echo",
        2,
        &["fast"],
        NO_KEYS,
        "connection",
        "Returns the given string.",
    ),
    spec(
        "get",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "string",
        "Returns the value of a key (read at the connection's consistency).",
    ),
    spec(
        "set",
        -3,
        &["write", "denyoom"],
        ONE_KEY,
        "string",
        "Sets the value of a key (a last-writer-wins write; NX, XX and GET are refused).",
    ),
    spec(
        "mget",
        -2,
        &["readonly", "fast"],
        ALL_KEYS,
        "string",
        "Returns the values of the keys.",
    ),
    spec(
        "mset",
        -3,
        &["write", "denyoom"],
        (1, -1, 2),
        "string",
        "Sets the values of the keys.",
    ),
    spec(
        "del",
        -2,
        &["write"],
        ALL_KEYS,
        "generic",
        "Deletes keys (tombstones); returns how many existed.",
    ),
    spec(
        "exists",
        -2,
        &["readonly", "fast"],
        ALL_KEYS,
        "generic",
        "Counts the keys that exist.",
    ),
    spec(
        "expire",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets a key's time to live in seconds.",
    ),
    spec(
        "pexpire",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets a key's time to live in milliseconds.",
    ),
    spec(
        "ttl",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "generic",
        "Returns a key's time to live in seconds.",
    ),
    spec(
        "pttl",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "generic",
        "Returns a key's time to live in milliseconds.",
    ),
    spec(
        "persist",
        2,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Removes a key's time to live.",
    ),
    spec(
        "info",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "Returns this node's server, clients, keyspace and replication facts.",
    ),
    spec(
        "command",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "Describes the commands (COMMAND, COUNT, INFO, DOCS).",
    ),
    spec(
        "client",
        -2,
        &["loading", "stale"],
        NO_KEYS,
        "connection",
        "ID, SETNAME, GETNAME and SETINFO of this connection.",
    ),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        NO_KEYS,
        "connection",
        "Selects database 0, the only one.",
    ),
    spec(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NO_KEYS,
        "connection",
        "Authenticates with a client token (--client-auth token).",
    ),
    spec(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NO_KEYS,
        "connection",
        "Picks the protocol (2 or 3), optionally authenticating and naming the connection.",
    ),
    spec(
        "quit",
        -1,
        &["loading", "stale", "fast", "no_auth"],
        NO_KEYS,
        "connection",
        "Closes the connection.",
    ),
    spec(
        "tinykv.consistency",
        -1,
        &["fast"],
        NO_KEYS,
        "connection",
        "Shows or sets this connection's consistency: ONE, QUORUM, ALL or DEFAULT.",
    ),
];

/// The command called `name` (lower case).
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}
