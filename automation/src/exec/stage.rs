//! The stages wrapped around every step, written once: timeout (the step's
//! future is dropped, which aborts its requests and kills its processes) and
//! retry with exponential backoff and jitter.

use std::future::Future;
use std::time::Duration as StdDuration;

use rand::RngExt;

use super::steps::{Failure, StepError, StepResult};
use crate::runbook::model::{Retry, RetryOn};

/// Runs `fut` with an optional time limit. Dropping the future on expiry is the cancellation.
pub async fn with_timeout(
    limit: Option<StdDuration>,
    fut: impl Future<Output = StepResult>,
) -> StepResult {
    match limit {
        None => fut.await,
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(StepError {
                failure: Failure::Timeout,
                message: format!("timed out after {}", crate::duration::Duration(limit)),
            }),
        },
    }
}

/// Does the policy retry this failure?
pub fn retries(policy: &Retry, failure: Failure) -> bool {
    policy.on.iter().any(|on| match on {
        RetryOn::Any => failure != Failure::Rejected,
        RetryOn::Transient => failure == Failure::Transient,
        RetryOn::Timeout => failure == Failure::Timeout,
    })
}

/// Delay before attempt `attempt + 1` (attempt ≥ 1): backoff·2^(attempt-1), capped, jittered into [½, 1].
pub fn backoff(policy: &Retry, attempt: u32) -> StdDuration {
    let base =
        policy.backoff.std().as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let capped = base.min(policy.max_backoff.std().as_secs_f64());
    let factor = if policy.jitter {
        rand::rng().random_range(0.5..=1.0)
    } else {
        1.0
    };
    StdDuration::from_secs_f64(capped * factor)
}

/// Runs `attempt` until it succeeds, fails for good, or attempts run out.
/// `on_retry` hears each failure that will be retried and the delay before the next try.
pub async fn with_retry<F, Fut>(
    policy: Option<&Retry>,
    mut attempt: F,
    mut on_retry: impl FnMut(u32, &StepError, StdDuration),
) -> (StepResult, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = StepResult>,
{
    let max = policy.map_or(1, |p| p.attempts.max(1));
    let mut n = 1;
    loop {
        let result = attempt(n).await;
        match (&result, policy) {
            (Err(e), Some(p)) if n < max && retries(p, e.failure) => {
                let delay = backoff(p, n);
                on_retry(n, e, delay);
                tokio::time::sleep(delay).await;
                n += 1;
            }
            _ => return (result, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Duration;

    fn policy(attempts: u32, on: Vec<RetryOn>) -> Retry {
        Retry {
            attempts,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            jitter: true,
            on,
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_until_success() {
        let p = policy(5, vec![RetryOn::Transient]);
        let mut seen = Vec::new();
        let (r, n) = with_retry(
            Some(&p),
            |n| async move {
                if n < 3 {
                    Err(StepError::transient("flaky"))
                } else {
                    Ok(serde_json::json!(n))
                }
            },
            |n, _, _| seen.push(n),
        )
        .await;
        assert_eq!(r.unwrap(), serde_json::json!(3));
        assert_eq!(n, 3);
        assert_eq!(seen, [1, 2]);
    }

    #[tokio::test]
    async fn never_retries_permanent_failures_unless_any() {
        let p = policy(5, vec![RetryOn::Transient]);
        let (r, n) = with_retry(
            Some(&p),
            |_| async { Err(StepError::permanent("bad input")) },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let p = policy(3, vec![RetryOn::Any]);
        let (_, n) = with_retry(
            Some(&p),
            |_| async { Err(StepError::permanent("bad input")) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(n, 3);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut p = policy(10, vec![]);
        p.jitter = false;
        assert_eq!(backoff(&p, 1), StdDuration::from_millis(1));
        assert_eq!(backoff(&p, 2), StdDuration::from_millis(2));
        assert_eq!(backoff(&p, 6), StdDuration::from_millis(4));
        p.jitter = true;
        for _ in 0..50 {
            let d = backoff(&p, 3);
            assert!(
                d >= StdDuration::from_millis(2) && d <= StdDuration::from_millis(4),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn timeout_cancels_the_future() {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let r = with_timeout(Some(StdDuration::from_millis(20)), async move {
            let _f = flag;
            tokio::time::sleep(StdDuration::from_secs(30)).await;
            Ok(serde_json::Value::Null)
        })
        .await;
        assert_eq!(r.unwrap_err().failure, Failure::Timeout);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
