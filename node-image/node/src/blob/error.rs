//! What can go wrong with a blob store, each with what to do about it.

/// A blob-store failure. Messages name the backend and say what to check.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "blob {cid} failed its content-hash check (ledger says {expected}, store returned {actual}): the stored copy was altered or corrupted; it was refused — restore it from another replica or ask the custodian to upload the record again"
    )]
    Tampered {
        cid: String,
        expected: String,
        actual: String,
    },
    #[error(
        "blob {cid} is not in the {backend} store: check the record's CID on the ledger and that the store holds (pins) it"
    )]
    NotFound { backend: &'static str, cid: String },
    #[error("{cid:?} is not a valid blob id for the {backend} store: {reason}")]
    BadCid {
        backend: &'static str,
        cid: String,
        reason: &'static str,
    },
    #[error(
        "local blob store at {path}: {source}; check that the directory exists, is writable and has free space"
    )]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{backend} at {url} is unreachable: {source}; check that it runs and that the blob config's URL is right"
    )]
    Unreachable {
        backend: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error(
        "{backend} at {url} did not answer {what} within {secs} s: it may be overloaded, or no reachable peer holds the blob"
    )]
    Timeout {
        backend: &'static str,
        url: String,
        what: String,
        secs: u64,
    },
    #[error("{backend} refused {what} (HTTP {status}): {message}")]
    Api {
        backend: &'static str,
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "{backend} sent an answer to {what} that medledger cannot read ({reason}); check that its version is supported (docs/storage.md)"
    )]
    Protocol {
        backend: &'static str,
        what: String,
        reason: String,
    },
    #[error("invalid blob store config: {0}")]
    Config(String),
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;
