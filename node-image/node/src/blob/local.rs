//! The embedded blob store: one file per blob in a directory, named by the hex content hash.
//! Writes go to a temporary file that is fsynced and renamed into place, then the directory
//! is fsynced, so a crash leaves either the whole blob or none of it.

use super::{BlobError, BlobRef, BlobStore, Result, verify};
use medledger_api::crypto::{Hash, Suite};
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};

const BACKEND: &str = "local";

#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    suite: Suite,
}

impl LocalStore {
    /// Opens (creating if needed) a store in `dir`.
    pub fn open(dir: impl AsRef<Path>, suite: Suite) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(LocalStore { dir, suite })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local address of a blob: `sha256-<hex>` or `sm3-<hex>`.
    pub fn cid_of(&self, hash: &Hash) -> String {
        format!("{}-{}", prefix(self.suite), hex::encode(hash))
    }

    /// The file holding `cid`; refuses anything but a well-formed id of this store's suite,
    /// so an id from the ledger can never name a path outside the directory.
    pub fn path_of(&self, cid: &str) -> Result<PathBuf> {
        let bad = |reason| BlobError::BadCid {
            backend: BACKEND,
            cid: cid.to_string(),
            reason,
        };
        let hex_part = cid
            .strip_prefix(prefix(self.suite))
            .and_then(|rest| rest.strip_prefix('-'))
            .ok_or_else(|| bad("expected sha256-<hex> (ed25519 suite) or sm3-<hex> (sm suite)"))?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the hash must be 64 lowercase hex digits"));
        }
        Ok(self.dir.join(hex_part))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self
            .dir
            .join(format!(".tmp-{:016x}", rand::rngs::OsRng.next_u64()));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            })
            .and_then(|_| std::fs::rename(&tmp, path))
            // The rename is durable only once the directory entry is.
            .and_then(|_| std::fs::File::open(&self.dir)?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(path, e));
        }
        Ok(())
    }
}

fn prefix(suite: Suite) -> &'static str {
    match suite {
        Suite::Ed25519 => "sha256",
        Suite::Sm => "sm3",
    }
}

fn io_error(path: &Path, source: std::io::Error) -> BlobError {
    BlobError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl BlobStore for LocalStore {
    fn suite(&self) -> Suite {
        self.suite
    }

    async fn put(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        let store = self.clone();
        // File I/O and fsync block: keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let hash = store.suite.hash(&bytes);
            let cid = store.cid_of(&hash);
            let path = store.path_of(&cid)?;
            // Always rewrite: a damaged copy already there is replaced by the good one.
            store.write_atomically(&path, &bytes)?;
            Ok(BlobRef {
                cid,
                hash,
                size: bytes.len() as u64,
            })
        })
        .await
        .expect("local blob write does not panic")
    }

    async fn get(&self, cid: &str, expected_hash: &Hash) -> Result<Vec<u8>> {
        let path = self.path_of(cid)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound {
                    backend: BACKEND,
                    cid: cid.to_string(),
                });
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        verify(self.suite, cid, &bytes, expected_hash)?;
        Ok(bytes)
    }

    async fn health(&self) -> Result<()> {
        let meta = tokio::fs::metadata(&self.dir)
            .await
            .map_err(|e| io_error(&self.dir, e))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(io_error(
                &self.dir,
                std::io::Error::other("not a directory"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(suite: Suite) -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("blobs"), suite).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn round_trips_on_both_suites() {
        for suite in [Suite::Ed25519, Suite::Sm] {
            let (_dir, store) = store(suite);
            store.health().await.unwrap();
            let blob = b"sealed record bytes".to_vec();
            let r = store.put(blob.clone()).await.unwrap();
            assert_eq!(r.hash, suite.hash(&blob));
            assert_eq!(r.size, blob.len() as u64);
            assert!(r.cid.starts_with(prefix(suite)));
            assert_eq!(store.get(&r.cid, &r.hash).await.unwrap(), blob);
            // Content addressing: the same bytes land at the same place, once.
            assert_eq!(store.put(blob).await.unwrap(), r);
            assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
        }
    }

    #[tokio::test]
    async fn a_tampered_blob_is_refused() {
        let (_dir, store) = store(Suite::Ed25519);
        let r = store.put(b"original ciphertext".to_vec()).await.unwrap();
        std::fs::write(store.path_of(&r.cid).unwrap(), b"altered ciphertext").unwrap();
        let err = store.get(&r.cid, &r.hash).await.unwrap_err();
        assert!(matches!(err, BlobError::Tampered { .. }), "{err}");
        assert!(err.to_string().contains("refused"));
        // Putting the original again repairs the copy.
        store.put(b"original ciphertext".to_vec()).await.unwrap();
        store.get(&r.cid, &r.hash).await.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_expected_hash_is_refused() {
        let (_dir, store) = store(Suite::Sm);
        let r = store.put(b"x".to_vec()).await.unwrap();
        let err = store.get(&r.cid, &[0; 32]).await.unwrap_err();
        assert!(matches!(err, BlobError::Tampered { .. }), "{err}");
    }

    #[tokio::test]
    async fn missing_and_malformed_ids_are_told_apart() {
        let (_dir, store) = store(Suite::Ed25519);
        let absent = store.cid_of(&[1; 32]);
        assert!(matches!(
            store.get(&absent, &[1; 32]).await,
            Err(BlobError::NotFound { .. })
        ));
        for cid in [
            "../etc/passwd",
            "sha256-../../x",
            "sm3-0000000000000000000000000000000000000000000000000000000000000000",
            "sha256-ABCDEF0000000000000000000000000000000000000000000000000000000000",
            "sha256-00",
        ] {
            assert!(
                matches!(
                    store.get(cid, &[0; 32]).await,
                    Err(BlobError::BadCid { .. })
                ),
                "{cid}"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_temporary_file() {
        let (_dir, store) = store(Suite::Ed25519);
        let target = store.dir().join("not-a-file");
        std::fs::create_dir(&target).unwrap();
        assert!(store.write_atomically(&target, b"x").is_err());
        let names: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("not-a-file")]);
    }
}
