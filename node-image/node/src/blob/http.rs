//! The HTTP plumbing kubo and ipfs-cluster share: a client with a bounded timeout, and
//! turning transport failures and error bodies into [`BlobError`]s.

use super::{BlobError, Result};
use std::time::Duration;

/// Parses and normalizes a base URL (no trailing slash).
pub(super) fn base_url(backend: &'static str, url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BlobError::Config(format!("{backend} url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BlobError::Config(format!(
            "{backend} url {url:?}: use http:// or https://"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub(super) fn client(timeout: Duration) -> Result<reqwest::Client> {
    // reqwest takes the process-wide rustls provider; ring is the one this binary is built
    // with (the node's own TLS uses it too). Installing fails harmlessly once one is set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| BlobError::Config(format!("cannot build an HTTP client: {e}")))
}

/// Sends a request; a non-2xx answer becomes [`BlobError::Api`] with the server's message.
pub(super) async fn send(
    backend: &'static str,
    url: &str,
    what: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(backend, url, what, timeout, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(BlobError::Api {
        backend,
        what: what.to_string(),
        status: status.as_u16(),
        message: error_message(&body),
    })
}

/// Reads a whole body, with the same error mapping as [`send`].
pub(super) async fn body(
    backend: &'static str,
    url: &str,
    what: &str,
    timeout: Duration,
    response: reqwest::Response,
) -> Result<Vec<u8>> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| transport_error(backend, url, what, timeout, e))
}

fn transport_error(
    backend: &'static str,
    url: &str,
    what: &str,
    timeout: Duration,
    e: reqwest::Error,
) -> BlobError {
    if e.is_timeout() {
        BlobError::Timeout {
            backend,
            url: url.to_string(),
            what: what.to_string(),
            secs: timeout.as_secs(),
        }
    } else {
        BlobError::Unreachable {
            backend,
            url: url.to_string(),
            source: e,
        }
    }
}

/// kubo answers `{"Message": ..}`, ipfs-cluster `{"message": ..}`; otherwise the raw body.
pub(super) fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(alias = "Message")]
        message: String,
    }
    match serde_json::from_str::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => body.trim().chars().take(500).collect(),
    }
}

pub(super) fn protocol(backend: &'static str, what: &str, reason: impl ToString) -> BlobError {
    BlobError::Protocol {
        backend,
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_extracted_from_both_apis() {
        assert_eq!(
            error_message(r#"{"Message":"invalid path \"x\"","Code":0,"Type":"error"}"#),
            "invalid path \"x\""
        );
        assert_eq!(
            error_message(r#"{"code":500,"message":"not enough peers to allocate CID"}"#),
            "not enough peers to allocate CID"
        );
        assert_eq!(error_message(" 404 page not found\n"), "404 page not found");
    }

    #[test]
    fn base_urls_are_checked_and_normalized() {
        assert_eq!(
            base_url("kubo", "http://127.0.0.1:5001/").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert!(base_url("kubo", "127.0.0.1:5001").is_err());
        assert!(base_url("kubo", "ftp://127.0.0.1").is_err());
    }
}
