//! Token buckets for per-peer rate limits (RFC 5355 section 6: a registrar must bound what one
//! peer can make it do).

use std::time::Instant;

use crate::config::Bucket;

/// A token bucket with a fixed rate and burst; rate 0 = unlimited.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate_per_s: u32,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(cfg: Bucket, now: Instant) -> Self {
        Self {
            rate_per_s: cfg.rate_per_s,
            burst: f64::from(cfg.burst),
            tokens: f64::from(cfg.burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.rate_per_s == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(self.rate_per_s)).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Bucket {
                rate_per_s: 10,
                burst: 5,
            },
            t0,
        );
        assert_eq!((0..10).filter(|_| b.try_take(t0)).count(), 5);
        // 10/s: one token per 100 ms.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..10).filter(|_| b.try_take(t1)).count(), 3);
        // Never more than the burst after a long pause.
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.try_take(t2)).count(), 5);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Bucket {
                rate_per_s: 0,
                burst: 0,
            },
            t0,
        );
        assert!((0..1000).all(|_| b.try_take(t0)));
    }
}
