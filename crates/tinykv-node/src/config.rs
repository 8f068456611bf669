//! Node configuration: every flag is also a `TINYKV_*` environment variable.

/// Default virtual nodes per member: enough that 5 members each own within
/// ±10% of an equal share of the ring (see the ring tests).
pub const DEFAULT_VNODES: u32 = 256;
