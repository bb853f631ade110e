//! Reconnecting after a lost connection (XMPPFramework's `XMPPReconnect`): when to try
//! again. The driver task does the trying, since it owns the connection: it resumes the
//! session with XEP-0198 when it can, or logs in afresh.

use confab_proto::{StreamError, StreamErrorCondition};
use rand::Rng;
use std::time::Duration;

/// When and how often to reconnect. Delays grow exponentially from `initial_delay` to at
/// most `max_delay`; each is drawn at random from its upper half ("equal jitter"), so
/// clients cut off together do not all come back at the same instant.
#[derive(Clone, Debug)]
pub struct Reconnect {
    /// The delay before the first attempt (its upper bound: the jitter halves it at most).
    pub initial_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts before giving up; `None` tries for ever.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The delay before attempt `attempt` (0 for the first), with jitter from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let cap = self.max_delay.max(Duration::from_millis(1));
        let base = self
            .initial_delay
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(cap)
            .min(cap);
        let half = base / 2;
        half + rng.gen_range(Duration::ZERO..=base - half)
    }

    /// Whether attempt `attempt` (0 for the first) may be made.
    pub(crate) fn may_try(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|m| attempt < m)
    }
}

/// Whether a stream error leaves the account worth reconnecting: the server going down or
/// resetting is; being replaced by another connection (`conflict`), refused or told off
/// is not, since coming back would only repeat it.
pub(crate) fn stream_error_is_transient(e: &StreamError) -> bool {
    matches!(
        e.condition,
        StreamErrorCondition::SystemShutdown
            | StreamErrorCondition::ConnectionTimeout
            | StreamErrorCondition::Reset
            | StreamErrorCondition::InternalServerError
            | StreamErrorCondition::RemoteConnectionFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_in_the_upper_half() {
        let p = Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: Some(3),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let base = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(p.max_delay);
            for _ in 0..50 {
                let d = p.delay(attempt, &mut rng);
                assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
            }
        }
        assert!(p.may_try(2) && !p.may_try(3));
        assert!(Reconnect::default().may_try(u32::MAX));
    }
}
