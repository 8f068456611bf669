//! The clock of a scale-down step: when the step started or last made
//! progress, so a step that stops moving is reported (Degraded
//! `ScaleDownStalled` and one Warning event) instead of waiting silently.

use k8s_openapi::jiff::Timestamp;

use crate::crd::{Operation, StepClock};

use super::{event, Plan, STALL_TIMEOUT};

/// The clock of step `name` at `progress` (per mille) in this pass: the
/// recorded one while the step and its progress are unchanged, else a new
/// one starting `now`.
pub(super) fn clock(op: &Operation, name: &str, progress: i32, now: Timestamp) -> StepClock {
    match &op.step {
        Some(c) if c.name == name && c.progress_permille == progress => c.clone(),
        _ => StepClock {
            name: name.to_string(),
            progress_permille: progress,
            since: now.to_string(),
            stall_reported: false,
        },
    }
}

/// Records `clock` in `op` and, once it has not moved for
/// [`STALL_TIMEOUT`], marks `out` stalled with `why` (a Warning event the
/// first time).
pub(super) fn check(
    out: &mut Plan,
    op: &mut Operation,
    mut clock: StepClock,
    now: Timestamp,
    why: &str,
) {
    // A time that does not parse (edited by hand) restarts the clock.
    let since = clock.since.parse::<Timestamp>().unwrap_or(now);
    // A `since` ahead of this clock (skew between operator replicas, or a
    // hand edit) counts as no idle time, never as a long one.
    let elapsed = now.duration_since(since);
    let idle = if elapsed.is_negative() {
        std::time::Duration::ZERO
    } else {
        elapsed.unsigned_abs()
    };
    if idle >= STALL_TIMEOUT {
        let minutes = idle.as_secs() / 60;
        let message = format!(
            "scale-down step '{}' has made no progress for {minutes} min: {why}",
            clock.name
        );
        if !clock.stall_reported {
            clock.stall_reported = true;
            out.events.push(event(
                true,
                "ScaleDownStalled",
                "ScaleDown",
                message.clone(),
            ));
        }
        out.stalled = Some(message);
    }
    op.step = Some(clock);
}

/// The target's streaming progress per mille, from its own answer.
pub(super) fn permille(progress: f64) -> i32 {
    if progress.is_finite() {
        (progress.clamp(0.0, 1.0) * 1000.0).round() as i32
    } else {
        0
    }
}
