//! Node identities. The operator generates a LedgerNode's node key (Ed25519) and admin key (in
//! the consortium's suite) into a Secret of the node's own namespace when the spec references
//! none, and then only ever reads them:
//!
//! - the Secret is created with `create` (never apply, patch or replace), so an existing key can
//!   never be overwritten, and it is marked `immutable`;
//! - it has no owner reference: deleting the LedgerNode keeps the identity, and re-creating the
//!   LedgerNode picks it up again;
//! - secret halves are never logged, put in a status or an event; only public keys leave.
//!
//! The node derives its self-signed TLS certificate from `node.key` at start, so this Secret is
//! all the TLS material a node has.

use crate::crd::{LedgerNode, Suite};
use crate::resources::config::{ADMIN_KEY, NODE_KEY};
use crate::resources::{FIELD_MANAGER, LABEL_MANAGED_BY, names, node_labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use medledger_api::keys::{KeyFile, SigningKey};
use std::collections::BTreeMap;

/// The public halves of a node's keys, as published in its member card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeys {
    pub node_key: String,
    pub admin_key: String,
    /// The Secret(s) the keys were read from, `node` first.
    pub node_secret: String,
    pub admin_secret: String,
    /// True when this call generated the keys.
    pub generated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "Secret {secret} named by spec.{field} does not exist: create it with the key {key} (a medledger key file, e.g. from `medledger keygen`)"
    )]
    KeySecretMissing {
        secret: String,
        field: &'static str,
        key: &'static str,
    },
    #[error(
        "Secret {secret} has no {key}: the operator never overwrites a key Secret; restore the key, or delete the Secret to have a new identity generated"
    )]
    KeySecretIncomplete { secret: String, key: &'static str },
    #[error("{key} in Secret {secret} is not a usable key: {reason}")]
    KeyInvalid {
        secret: String,
        key: &'static str,
        reason: String,
    },
    #[error("cannot read Secret {secret}: {source}")]
    KeySecretRead { secret: String, source: kube::Error },
    #[error("cannot create Secret {secret}: {source}")]
    KeySecretCreate { secret: String, source: kube::Error },
}

impl KeyError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            KeyError::KeySecretMissing { .. } => "KeySecretMissing",
            KeyError::KeySecretIncomplete { .. } => "KeySecretIncomplete",
            KeyError::KeyInvalid { .. } => "KeyInvalid",
            KeyError::KeySecretRead { .. } => "KeySecretRead",
            KeyError::KeySecretCreate { .. } => "KeySecretCreate",
        }
    }

    /// Whether a person must act (as opposed to a transient API failure).
    pub fn needs_user(&self) -> bool {
        !matches!(
            self,
            KeyError::KeySecretRead { .. } | KeyError::KeySecretCreate { .. }
        )
    }
}

/// The Secret the operator generates for `node`: whichever keys the spec does not reference.
pub fn generated_key_secret(
    node: &LedgerNode,
    node_key: Option<&SigningKey>,
    admin_key: Option<&SigningKey>,
) -> Secret {
    let name = node.name_any();
    let mut labels = node_labels(
        &name,
        &node.spec.consortium_ref.name,
        &node.spec.member_name,
    );
    labels.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    let mut data = BTreeMap::new();
    if let Some(k) = node_key {
        data.insert(
            NODE_KEY.to_string(),
            ByteString(k.to_file().to_json().into_bytes()),
        );
    }
    if let Some(k) = admin_key {
        data.insert(
            ADMIN_KEY.to_string(),
            ByteString(k.to_file().to_json().into_bytes()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(names::key_secret(&name)),
            namespace: node.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "medledger.io/note".to_string(),
                "Identity of a ledger node. Never edited by the operator and kept when the LedgerNode is deleted; deleting it loses the identity.".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The public key of `key` in `secret`, checking that it is a key of `suite`.
pub fn public_key(secret: &Secret, key: &'static str, suite: Suite) -> Result<String, KeyError> {
    let secret_name = secret.name_any();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| KeyError::KeySecretIncomplete {
            secret: secret_name.clone(),
            key,
        })?;
    let invalid = |reason: String| KeyError::KeyInvalid {
        secret: secret_name.clone(),
        key,
        reason,
    };
    let text = std::str::from_utf8(&bytes.0).map_err(|_| invalid("not UTF-8 text".into()))?;
    let file: KeyFile = serde_json::from_str(text)
        .map_err(|e| invalid(format!("not a medledger key file ({e})")))?;
    let want: medledger_api::crypto::Suite = suite.into();
    if file.suite != want {
        return Err(invalid(format!(
            "it is a {} key, but a {want} key is needed",
            file.suite
        )));
    }
    let signing = file
        .signing_key()
        .map_err(|e| invalid(format!("{e}; the public key must match the secret key")))?;
    Ok(hex::encode(signing.public()))
}

/// Reads the node's keys, generating the Secret first when the spec references none.
pub async fn ensure_keys(client: &Client, node: &LedgerNode) -> Result<PublicKeys, KeyError> {
    let ns = node.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let generated_name = names::key_secret(&node.name_any());
    let node_ref = node.spec.node_key_secret.as_ref().map(|r| r.name.clone());
    let admin_ref = node.spec.admin_key_secret.as_ref().map(|r| r.name.clone());

    let get = |name: String| {
        let api = api.clone();
        async move {
            api.get_opt(&name)
                .await
                .map_err(|source| KeyError::KeySecretRead {
                    secret: name.clone(),
                    source,
                })
        }
    };

    let mut generated = false;
    let mut own = None;
    if node_ref.is_none() || admin_ref.is_none() {
        own = get(generated_name.clone()).await?;
        if own.is_none() {
            let node_key = node_ref
                .is_none()
                .then(|| SigningKey::generate(medledger_api::crypto::Suite::Ed25519));
            let admin_key = admin_ref
                .is_none()
                .then(|| SigningKey::generate(node.spec.suite.into()));
            let secret = generated_key_secret(node, node_key.as_ref(), admin_key.as_ref());
            match api
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &secret,
                )
                .await
            {
                Ok(s) => {
                    generated = true;
                    own = Some(s);
                }
                // Someone (another replica, a person) created it meanwhile: theirs wins, read it.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    own = get(generated_name.clone()).await?
                }
                Err(source) => {
                    return Err(KeyError::KeySecretCreate {
                        secret: generated_name.clone(),
                        source,
                    });
                }
            }
        }
    }

    let fetch = |name: Option<String>, field: &'static str, key: &'static str| {
        let own = own.clone();
        let generated_name = generated_name.clone();
        let get = &get;
        async move {
            match name {
                None => own.ok_or(KeyError::KeySecretIncomplete {
                    secret: generated_name,
                    key,
                }),
                Some(n) => get(n.clone()).await?.ok_or(KeyError::KeySecretMissing {
                    secret: n,
                    field,
                    key,
                }),
            }
        }
    };
    let node_secret = fetch(node_ref, "nodeKeySecret", NODE_KEY).await?;
    let admin_secret = fetch(admin_ref, "adminKeySecret", ADMIN_KEY).await?;
    Ok(PublicKeys {
        node_key: public_key(&node_secret, NODE_KEY, Suite::Ed25519)?,
        admin_key: public_key(&admin_secret, ADMIN_KEY, node.spec.suite)?,
        node_secret: node_secret.name_any(),
        admin_secret: admin_secret.name_any(),
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;

    #[test]
    fn generated_secret_is_immutable_unowned_and_round_trips() {
        let node = node();
        let nk = SigningKey::generate(medledger_api::crypto::Suite::Ed25519);
        let ak = SigningKey::generate(medledger_api::crypto::Suite::Ed25519);
        let s = generated_key_secret(&node, Some(&nk), Some(&ak));
        assert_eq!(s.metadata.name.as_deref(), Some("node-a-keys"));
        assert_eq!(s.immutable, Some(true));
        assert!(
            s.metadata.owner_references.is_none(),
            "deleting the LedgerNode must not delete its identity"
        );
        assert_eq!(
            public_key(&s, NODE_KEY, Suite::Ed25519).unwrap(),
            hex::encode(nk.public())
        );
        assert_eq!(
            public_key(&s, ADMIN_KEY, Suite::Ed25519).unwrap(),
            hex::encode(ak.public())
        );
        // Debug output of the Secret's builder inputs never shows the secret halves.
        assert!(!format!("{nk:?}").contains(&nk.to_file().secret_key));
    }

    #[test]
    fn sm_admin_keys_are_checked_against_the_suite() {
        let node = node();
        let ak = SigningKey::generate(medledger_api::crypto::Suite::Sm);
        let s = generated_key_secret(&node, None, Some(&ak));
        assert_eq!(public_key(&s, ADMIN_KEY, Suite::Sm).unwrap().len(), 66);
        let err = public_key(&s, ADMIN_KEY, Suite::Ed25519).unwrap_err();
        assert!(
            err.to_string()
                .contains("it is a sm key, but a ed25519 key is needed"),
            "{err}"
        );
        assert!(matches!(
            public_key(&s, NODE_KEY, Suite::Ed25519),
            Err(KeyError::KeySecretIncomplete { .. })
        ));
    }

    #[test]
    fn tampered_keys_are_refused_without_echoing_the_secret() {
        let node = node();
        let nk = SigningKey::generate(medledger_api::crypto::Suite::Ed25519);
        let mut file = nk.to_file();
        file.public_key = key_hex(medledger_api::crypto::Suite::Ed25519);
        let mut s = generated_key_secret(&node, None, None);
        s.data
            .as_mut()
            .unwrap()
            .insert(NODE_KEY.into(), ByteString(file.to_json().into_bytes()));
        let err = public_key(&s, NODE_KEY, Suite::Ed25519)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must match the secret key"), "{err}");
        assert!(!err.contains(&file.secret_key));
        s.data
            .as_mut()
            .unwrap()
            .insert(NODE_KEY.into(), ByteString(b"garbage".to_vec()));
        assert!(
            public_key(&s, NODE_KEY, Suite::Ed25519)
                .unwrap_err()
                .to_string()
                .contains("not a medledger key file")
        );
    }
}
