//! Exponential backoff with jitter, for reconnects and restarts.

use std::time::Duration;

use crate::edge::config::BackoffConfig;

/// Exponential backoff with jitter (xorshift; no cryptographic needs).
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            cfg,
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next wait: initial·2^n capped at max, times a uniform factor in [1-jitter, 1+jitter].
    pub fn next_delay(&mut self) -> Duration {
        let base =
            (self.cfg.initial_s * 2f64.powi(self.attempt.min(30) as i32)).min(self.cfg.max_s);
        self.attempt = self.attempt.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let f = 1.0 + self.cfg.jitter * (2.0 * u - 1.0);
        Duration::from_secs_f64((base * f).max(0.01))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_within_jitter() {
        let mut b = Backoff::new(BackoffConfig {
            initial_s: 0.5,
            max_s: 4.0,
            jitter: 0.2,
        });
        let want = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0];
        for w in want {
            let d = b.next_delay().as_secs_f64();
            assert!(d >= w * 0.8 - 1e-9 && d <= w * 1.2 + 1e-9, "{d} vs {w}");
        }
        b.reset();
        assert!(b.next_delay().as_secs_f64() <= 0.6);
    }
}
