//! Record-cipher throughput: our `envelope::seal` (AES-256-GCM, SM4-GCM) beside
//! `openssl speed -evp <cipher>` run in the same process lifetime, as a ratio, so a figure
//! carries its own reference machine. MB = 10^6 bytes, as `openssl speed` counts.
//!
//! Ours includes what a record pays for: key setup, allocating and copying the output,
//! the header and the tag; openssl speed encrypts in place with one key setup. A ratio
//! below 1 is therefore expected even where the cipher cores are equally fast.

use crate::envelope::{self, DataKey};
use medledger_api::crypto::Suite;
use serde::Serialize;
use std::process::Command;
use std::time::{Duration, Instant};

/// The buffer sizes measured: openssl speed's largest default block and a 1 MiB record.
pub const SIZES: [usize; 2] = [16 * 1024, 1024 * 1024];

/// One cipher at one buffer size.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CipherCase {
    /// `aes-256-gcm` or `sm4-gcm`, as openssl names them.
    pub cipher: &'static str,
    pub buffer_bytes: usize,
    pub ours_mb_per_s: f64,
    /// `null` when openssl is absent or lacks the cipher; `openssl_note` says which.
    pub openssl_mb_per_s: Option<f64>,
    /// ours / openssl.
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openssl_note: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CipherReport {
    pub seconds_per_case: u32,
    pub cases: Vec<CipherCase>,
}

fn openssl_name(suite: Suite) -> &'static str {
    match suite {
        Suite::Ed25519 => "aes-256-gcm",
        Suite::Sm => "sm4-gcm",
    }
}

/// Measures AES-256-GCM and SM4-GCM sealing at [`SIZES`], `seconds` per case for us and
/// for openssl each.
pub fn aes_gcm_throughput(seconds: u32) -> CipherReport {
    let seconds = seconds.max(1);
    let mut cases = Vec::new();
    for suite in [Suite::Ed25519, Suite::Sm] {
        for size in SIZES {
            let cipher = openssl_name(suite);
            let ours = seal_throughput(suite, size, Duration::from_secs(seconds.into()));
            let (openssl, note) = match openssl_speed(cipher, size, seconds) {
                Ok(v) => (Some(v), None),
                Err(why) => (None, Some(why)),
            };
            cases.push(CipherCase {
                cipher,
                buffer_bytes: size,
                ours_mb_per_s: round2(ours),
                openssl_mb_per_s: openssl.map(round2),
                ratio: openssl.map(|o| round2(ours / o)),
                openssl_note: note,
            });
        }
    }
    CipherReport {
        seconds_per_case: seconds,
        cases,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// MB/s of `envelope::seal` on `size`-byte buffers for about `budget`.
pub fn seal_throughput(suite: Suite, size: usize, budget: Duration) -> f64 {
    let key = DataKey::generate();
    let plain = vec![0x5au8; size];
    let mut counter: u64 = 0;
    let mut bytes: u64 = 0;
    let start = Instant::now();
    // A counter nonce keeps the random generator out of the figure (never repeats here).
    while start.elapsed() < budget || counter == 0 {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        let sealed = envelope::seal_with_nonce(suite, &key, &nonce, &plain, b"bench")
            .expect("sealing a buffer succeeds");
        std::hint::black_box(sealed);
        counter += 1;
        bytes += size as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Runs `openssl speed -elapsed -mr -evp CIPHER -bytes SIZE -seconds N`; MB/s, or why
/// there is none. `-elapsed` makes openssl count wall-clock time as we do (by default it
/// counts CPU time, which flatters it on a busy machine).
pub fn openssl_speed(cipher: &str, size: usize, seconds: u32) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-elapsed", "-mr", "-evp", cipher])
        .args([
            "-bytes",
            &size.to_string(),
            "-seconds",
            &seconds.to_string(),
        ])
        .output()
        .map_err(|e| {
            format!("openssl not runnable ({e}); install it to get the reference figure")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_openssl_speed(&text) {
        Some(v) if out.status.success() => Ok(v),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or("no output").trim();
            Err(format!(
                "openssl speed gave no figure for {cipher}: {first}"
            ))
        }
    }
}

/// Reads the machine-readable (`-mr`) result line `+F:<n>:<cipher>:<bytes/s>...`; with one
/// `-bytes` size there is one figure. Returns MB/s.
pub fn parse_openssl_speed(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("+F:"))
        .and_then(|rest| rest.split(':').nth(2))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|bytes_per_s| bytes_per_s / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `openssl speed -mr -evp aes-256-gcm -bytes 16384 -seconds 1`
    /// (OpenSSL 3.0.19) on the project's machine.
    const SAMPLE: &str = "+DT:AES-256-GCM:1:16384\n+R:196438:AES-256-GCM:0.570000\n+H:16384\n+F:25:AES-256-GCM:5646386301.75\n";

    #[test]
    fn parses_openssl_speed_machine_readable_output() {
        assert_eq!(parse_openssl_speed(SAMPLE), Some(5646.38630175));
        assert_eq!(parse_openssl_speed(""), None);
        assert_eq!(
            parse_openssl_speed("speed: sm4-gcm is an unknown cipher or digest\n"),
            None
        );
        assert_eq!(parse_openssl_speed("+F:25:AES-256-GCM:fast\n"), None);
    }

    #[test]
    fn seal_throughput_is_positive_for_both_ciphers() {
        for suite in [Suite::Ed25519, Suite::Sm] {
            assert!(seal_throughput(suite, 1024, Duration::ZERO) > 0.0);
        }
    }

    #[test]
    fn a_missing_cipher_is_reported_not_fatal() {
        let r = openssl_speed("no-such-cipher-medledger", 16, 1);
        assert!(r.is_err());
    }
}
