//! Keyed rate limits for login and registration (GCRA, from `governor`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// `requests` per `period_secs`, allowed in a burst and then replenished evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub period_secs: u64,
}

impl RateLimit {
    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.requests.max(1)).expect("max(1) is never zero");
        let every = Duration::from_secs(self.period_secs.max(1)) / burst.get();
        Quota::with_period(every.max(Duration::from_nanos(1)))
            .expect("the period is at least a nanosecond")
            .allow_burst(burst)
    }
}

/// The limits the API enforces, from configuration.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Login attempts from one client address.
    pub login_per_ip: RateLimit,
    /// Login attempts for one email, from anywhere.
    pub login_per_account: RateLimit,
    /// Registrations from one client address.
    pub register_per_ip: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            login_per_ip: RateLimit {
                requests: 20,
                period_secs: 60,
            },
            login_per_account: RateLimit {
                requests: 10,
                period_secs: 300,
            },
            register_per_ip: RateLimit {
                requests: 10,
                period_secs: 3600,
            },
        }
    }
}

/// One keyed limiter.
pub struct Limiter {
    inner: DefaultKeyedRateLimiter<String>,
}

/// Keys kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            inner: RateLimiter::keyed(limit.quota()),
        }
    }

    /// Counts one request for `key`; over the limit gives 429 with the seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        if self.inner.len() > SWEEP_AT {
            self.inner.retain_recent();
        }
        self.inner.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

/// The limiters of a running API.
pub struct Limiters {
    pub login_ip: Limiter,
    pub login_account: Limiter,
    pub register_ip: Limiter,
}

impl Limiters {
    pub fn new(l: &RateLimits) -> Self {
        Limiters {
            login_ip: Limiter::new(l.login_per_ip),
            login_account: Limiter::new(l.login_per_account),
            register_ip: Limiter::new(l.register_per_ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_says_how_long_to_wait() {
        let l = Limiter::new(RateLimit {
            requests: 3,
            period_secs: 60,
        });
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        let err = l.check("a").unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        let wait = err.retry_after.unwrap();
        assert!(
            (1..=20).contains(&wait),
            "one request comes back every 20 s, got {wait}"
        );
        l.check("b").expect("keys are limited separately");
    }
}
