//! Consistency levels as the client names them.

use std::fmt;
use std::str::FromStr;

use tinykv_proto::tinykv as pb;

/// How many replicas must answer a read or acknowledge a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The cluster's default (QUORUM unless the node was configured otherwise).
    #[default]
    Default,
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// A majority of the N replicas.
    Quorum,
    /// All N replicas.
    All,
    /// An explicit number of replicas (the legacy `[rf]` / `[quorum]` argument).
    Count(u32),
}

impl Consistency {
    /// The named level for the wire, and the explicit count (0 if named).
    pub(crate) fn to_wire(self) -> (pb::Consistency, i32) {
        match self {
            Consistency::Default => (pb::Consistency::Default, 0),
            Consistency::One => (pb::Consistency::One, 0),
            Consistency::Two => (pb::Consistency::Two, 0),
            Consistency::Quorum => (pb::Consistency::Quorum, 0),
            Consistency::All => (pb::Consistency::All, 0),
            Consistency::Count(n) => (
                pb::Consistency::Default,
                i32::try_from(n).unwrap_or(i32::MAX),
            ),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Default => f.write_str("default"),
            Consistency::One => f.write_str("one"),
            Consistency::Two => f.write_str("two"),
            Consistency::Quorum => f.write_str("quorum"),
            Consistency::All => f.write_str("all"),
            Consistency::Count(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(Consistency::Default),
            "one" => Ok(Consistency::One),
            "two" => Ok(Consistency::Two),
            "quorum" => Ok(Consistency::Quorum),
            "all" => Ok(Consistency::All),
            other => other.parse::<u32>().map(Consistency::Count).map_err(|_| {
                format!("unknown consistency level {s:?} (one, two, quorum, all or a number)")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_counts() {
        assert_eq!("QUORUM".parse(), Ok(Consistency::Quorum));
        assert_eq!("2".parse(), Ok(Consistency::Count(2)));
        assert!("most".parse::<Consistency>().is_err());
        assert_eq!(
            Consistency::Count(3).to_wire(),
            (pb::Consistency::Default, 3)
        );
        assert_eq!(Consistency::All.to_wire(), (pb::Consistency::All, 0));
    }
}
