//! The StatefulSet running `medledger node`: one pod, Pod Security "restricted", probes on the
//! admin port, and a volume claim kept when the LedgerNode is deleted.

use super::config::{
    CONFIG_DIR, CONFIG_KEY, DATA_DIR, GENESIS_DIR, GENESIS_KEY, KEYS_DIR, NODE_KEY,
};
use super::{
    ADMIN_PORT, ANNOTATION_CONFIG_HASH, ANNOTATION_GENESIS_HASH, API_PORT, NODE_UID, PEER_PORT,
    child_meta, names, node_labels, selector_labels,
};
use crate::crd::LedgerNode;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

pub const CONTAINER: &str = "node";
pub const DATA_VOLUME: &str = "data";

/// What the StatefulSet needs besides the LedgerNode itself.
pub struct NodeInputs<'a> {
    pub genesis_hash: &'a str,
    /// The rendered `node.yaml`; its hash rolls the pod when the configuration changes.
    pub config_yaml: &'a str,
    /// Secret holding `node.key`.
    pub key_secret: &'a str,
}

pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("250m".into())),
            ("memory".to_string(), Quantity("256Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("1Gi".into()),
        )])),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("metrics".into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub fn data_claim_template(node: &LedgerNode) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(selector_labels(&node.name_any())),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: node.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(node.spec.storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn statefulset(node: &LedgerNode, inputs: &NodeInputs<'_>) -> StatefulSet {
    let name = node.name_any();
    let spec = &node.spec;
    let labels = node_labels(&name, &spec.consortium_ref.name, &spec.member_name);
    let pod_annotations = BTreeMap::from([
        (
            ANNOTATION_CONFIG_HASH.to_string(),
            super::content_hash(inputs.config_yaml.as_bytes()),
        ),
        (
            ANNOTATION_GENESIS_HASH.to_string(),
            inputs.genesis_hash.to_string(),
        ),
    ]);
    let restricted = SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(NODE_UID),
        run_as_group: Some(NODE_UID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        // The image's entrypoint is `medledger`.
        args: Some(vec![
            "node".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![
            container_port("api", API_PORT),
            container_port("peer", PEER_PORT),
            container_port("metrics", ADMIN_PORT),
        ]),
        // Startup covers verifying the stored chain at start; liveness only says the process
        // serves; readiness says the node has caught up with the cluster.
        startup_probe: Some(http_probe("/live", 5, 120)),
        liveness_probe: Some(http_probe("/live", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 3)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(restricted),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            },
            mount("config", CONFIG_DIR),
            mount("genesis", GENESIS_DIR),
            mount("keys", KEYS_DIR),
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&name),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "genesis".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::genesis_config_map(&spec.consortium_ref.name),
                items: Some(vec![KeyToPath {
                    key: GENESIS_KEY.into(),
                    path: GENESIS_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            // Only the node key is mounted: the admin key stays in the Secret for the
            // member's administrators (`medledger` CLI), never in the node.
            name: "keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(inputs.key_secret.to_string()),
                items: Some(vec![KeyToPath {
                    key: NODE_KEY.into(),
                    path: NODE_KEY.into(),
                    mode: Some(0o400),
                    ..Default::default()
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    StatefulSet {
        metadata: child_meta(node, names::statefulset(&name), labels.clone()),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::headless_service(&name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..Default::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![data_claim_template(node)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NODE_UID),
                        run_as_group: Some(NODE_UID),
                        fs_group: Some(NODE_UID),
                        fs_group_change_policy: Some("OnRootMismatch".into()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;

    fn build(node: &LedgerNode) -> StatefulSet {
        statefulset(
            node,
            &NodeInputs {
                genesis_hash: "ab12",
                config_yaml: "dataDir: /x\n",
                key_secret: "node-a-keys",
            },
        )
    }

    fn pod(s: &StatefulSet) -> PodSpec {
        s.spec.template.spec.clone().unwrap()
    }

    #[test]
    fn runs_medledger_node_with_its_config() {
        let s = build(&node());
        assert_eq!(s.metadata.name.as_deref(), Some("node-a"));
        let c = &pod(&s).containers[0];
        assert_eq!(c.image.as_deref(), Some("medledger/medledger:0.1.0"));
        assert_eq!(
            c.args.as_ref().unwrap(),
            &["node", "--config", "/etc/medledger/config/node.yaml"]
        );
        let spec = s.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("node-a"));
    }

    #[test]
    fn pod_security_is_restricted() {
        let p = pod(&build(&node()));
        let psc = p.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(10001));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(p.automount_service_account_token, Some(false));
        let sc = p.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        // No hostPath, hostNetwork or privileged anything.
        assert!(p.host_network.is_none() && p.host_pid.is_none());
        assert!(p.volumes.unwrap().iter().all(|v| v.host_path.is_none()));
    }

    #[test]
    fn probes_use_the_admin_port() {
        let c = pod(&build(&node())).containers[0].clone();
        let path = |p: Option<Probe>| {
            p.unwrap()
                .http_get
                .map(|h| (h.path.unwrap(), h.port))
                .unwrap()
        };
        assert_eq!(
            path(c.liveness_probe),
            ("/live".into(), IntOrString::String("metrics".into()))
        );
        assert_eq!(
            path(c.readiness_probe),
            ("/ready".into(), IntOrString::String("metrics".into()))
        );
        let metrics = c
            .ports
            .unwrap()
            .into_iter()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .unwrap();
        assert_eq!(metrics.container_port, 9464);
    }

    #[test]
    fn resources_default_or_come_from_the_spec() {
        let c = pod(&build(&minimal_node())).containers[0].clone();
        assert_eq!(c.resources.unwrap(), default_resources());
        let mut n = node();
        n.spec.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
            ..Default::default()
        });
        let c = pod(&build(&n)).containers[0].clone();
        assert_eq!(
            c.resources.unwrap().requests.unwrap()["cpu"],
            Quantity("2".into())
        );
    }

    #[test]
    fn volumes_keep_the_data_and_mount_only_the_node_key() {
        let s = build(&node());
        let spec = s.spec.clone();
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let vct = &spec.volume_claim_templates.unwrap()[0];
        let pvc = vct.spec.clone().unwrap();
        assert_eq!(pvc.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc.resources.unwrap().requests.unwrap()["storage"],
            Quantity("10Gi".into())
        );
        let p = pod(&s);
        let keys = p
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "keys")
            .unwrap()
            .secret
            .unwrap();
        assert_eq!(keys.secret_name.as_deref(), Some("node-a-keys"));
        let items: Vec<_> = keys.items.unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(items, ["node.key"]);
        let mounts = p.containers[0].volume_mounts.clone().unwrap();
        let find = |n: &str| mounts.iter().find(|m| m.name == n).unwrap().clone();
        assert_eq!(find("data").mount_path, "/var/lib/medledger");
        assert_eq!(find("keys").mount_path, "/etc/medledger/keys");
        assert_eq!(find("keys").read_only, Some(true));
        assert_eq!(find("genesis").mount_path, "/etc/medledger/genesis");
        assert_eq!(find("config").mount_path, "/etc/medledger/config");
    }

    #[test]
    fn a_config_change_rolls_the_pod() {
        let n = node();
        let a = statefulset(
            &n,
            &NodeInputs {
                genesis_hash: "ab",
                config_yaml: "a",
                key_secret: "k",
            },
        );
        let b = statefulset(
            &n,
            &NodeInputs {
                genesis_hash: "ab",
                config_yaml: "b",
                key_secret: "k",
            },
        );
        let hash = |s: &StatefulSet| {
            s.spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[ANNOTATION_CONFIG_HASH]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash(&a),
            hash(&statefulset(
                &n,
                &NodeInputs {
                    genesis_hash: "ab",
                    config_yaml: "a",
                    key_secret: "k"
                }
            ))
        );
    }
}
