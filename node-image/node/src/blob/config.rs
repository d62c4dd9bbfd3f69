//! Which blob backend a node uses, as it appears in YAML/JSON (camelCase):
//!
//! ```yaml
//! blob: { backend: local, dir: /var/lib/medledger/blobs }
//! blob: { backend: kubo, url: "http://127.0.0.1:5001" }
//! blob: { backend: cluster, url: "http://127.0.0.1:9094", kuboUrl: "http://127.0.0.1:5001",
//!         replicationMin: 2, replicationMax: 3 }
//! ```

use super::cluster::{ClusterStore, Replication};
use super::kubo::KuboStore;
use super::local::LocalStore;
use super::{BlobBackend, BlobError, Result};
use medledger_api::crypto::Suite;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Default bound on one HTTP exchange with kubo or the cluster: long enough for a 1 MiB
/// record over a slow link, short enough that a missing blob does not hang a request.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "camelCase", deny_unknown_fields)]
pub enum BlobConfig {
    /// The embedded content-addressed directory store.
    #[serde(rename_all = "camelCase")]
    Local { dir: PathBuf },
    /// A kubo daemon's RPC API (port 5001 by default).
    #[serde(rename_all = "camelCase")]
    Kubo {
        url: String,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
    /// An ipfs-cluster peer's REST API (port 9094 by default) and the kubo RPC beside it.
    /// Replication factors: both 0 = the cluster's configured default, both -1 = every
    /// peer, else 1 <= min <= max.
    #[serde(rename_all = "camelCase")]
    Cluster {
        url: String,
        kubo_url: String,
        #[serde(default)]
        replication_min: i32,
        #[serde(default)]
        replication_max: i32,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
}

impl BlobConfig {
    /// Opens the configured store; blobs are named and checked with `suite`'s hash.
    pub fn open(&self, suite: Suite) -> Result<BlobBackend> {
        Ok(match self {
            BlobConfig::Local { dir } => BlobBackend::Local(LocalStore::open(dir, suite)?),
            BlobConfig::Kubo { url, timeout_secs } => {
                BlobBackend::Kubo(KuboStore::new(url, suite, timeout(*timeout_secs)?)?)
            }
            BlobConfig::Cluster {
                url,
                kubo_url,
                replication_min,
                replication_max,
                timeout_secs,
            } => {
                let replication = Replication::new(*replication_min, *replication_max)?;
                let kubo = KuboStore::new(kubo_url, suite, timeout(*timeout_secs)?)?;
                BlobBackend::Cluster(ClusterStore::new(
                    url,
                    kubo,
                    replication,
                    timeout(*timeout_secs)?,
                )?)
            }
        })
    }
}

fn timeout(secs: u64) -> Result<Duration> {
    if secs == 0 {
        return Err(BlobError::Config(
            "timeoutSecs must be at least 1".to_string(),
        ));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_from_camel_case_yaml() {
        let c: BlobConfig = serde_yaml::from_str(
            "{ backend: cluster, url: 'http://127.0.0.1:9094', kuboUrl: 'http://127.0.0.1:5001', replicationMin: 2, replicationMax: 3 }",
        )
        .unwrap();
        assert_eq!(
            c,
            BlobConfig::Cluster {
                url: "http://127.0.0.1:9094".into(),
                kubo_url: "http://127.0.0.1:5001".into(),
                replication_min: 2,
                replication_max: 3,
                timeout_secs: DEFAULT_TIMEOUT_SECS,
            }
        );
        let c: BlobConfig = serde_yaml::from_str("{ backend: local, dir: /tmp/blobs }").unwrap();
        assert_eq!(
            c,
            BlobConfig::Local {
                dir: "/tmp/blobs".into()
            }
        );
        let c: BlobConfig =
            serde_yaml::from_str("{ backend: kubo, url: 'http://127.0.0.1:5001', timeoutSecs: 5 }")
                .unwrap();
        assert!(matches!(
            c,
            BlobConfig::Kubo {
                timeout_secs: 5,
                ..
            }
        ));
        assert!(serde_yaml::from_str::<BlobConfig>("{ backend: kubo, url: x, typo: 1 }").is_err());
        assert!(serde_yaml::from_str::<BlobConfig>("{ backend: s3, url: x }").is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let bad = [
            BlobConfig::Kubo {
                url: "not a url".into(),
                timeout_secs: 5,
            },
            BlobConfig::Kubo {
                url: "http://127.0.0.1:5001".into(),
                timeout_secs: 0,
            },
            BlobConfig::Cluster {
                url: "http://127.0.0.1:9094".into(),
                kubo_url: "http://127.0.0.1:5001".into(),
                replication_min: 3,
                replication_max: 2,
                timeout_secs: 5,
            },
        ];
        for c in bad {
            assert!(
                matches!(c.open(Suite::Ed25519), Err(BlobError::Config(_))),
                "{c:?}"
            );
        }
    }
}
