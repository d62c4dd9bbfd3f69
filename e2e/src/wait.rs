//! Bounded waits.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 250 ms until it returns `Ok`, for at most `timeout`. `Err(state)` means
/// "not yet" and describes what was seen; the last one is in the timeout error.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(state) if start.elapsed() >= timeout => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
