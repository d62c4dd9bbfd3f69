//! The Services of a LedgerNode: a headless Service (stable pod DNS, client API, metrics) and
//! the p2p Service other members reach, whose type, annotations and ports come from the spec.

use super::{ADMIN_PORT, API_PORT, PEER_PORT, child_meta, names, node_labels, selector_labels};
use crate::crd::LedgerNode;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub const LABEL_SERVICE: &str = "medledger.io/service";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub fn headless_service(node: &LedgerNode) -> Service {
    let name = node.name_any();
    let mut labels = node_labels(
        &name,
        &node.spec.consortium_ref.name,
        &node.spec.member_name,
    );
    labels.insert(LABEL_SERVICE.into(), "headless".into());
    Service {
        metadata: child_meta(node, names::headless_service(&name), labels),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(&name)),
            // Validators must reach each other before they are ready: readiness waits for sync.
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("api", API_PORT),
                port("peer", PEER_PORT),
                port("metrics", ADMIN_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn p2p_service(node: &LedgerNode) -> Service {
    let name = node.name_any();
    let p2p = &node.spec.p2p;
    let mut labels = node_labels(
        &name,
        &node.spec.consortium_ref.name,
        &node.spec.member_name,
    );
    labels.insert(LABEL_SERVICE.into(), "p2p".into());
    let mut meta = child_meta(node, names::p2p_service(&name), labels);
    if !p2p.annotations.is_empty() {
        meta.annotations = Some(p2p.annotations.clone());
    }
    let mut peer = port("peer", PEER_PORT);
    peer.node_port = p2p.node_port;
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(p2p.service_type.as_str().to_string()),
            selector: Some(selector_labels(&name)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![peer]),
            load_balancer_source_ranges: (!p2p.load_balancer_source_ranges.is_empty())
                .then(|| p2p.load_balancer_source_ranges.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The endpoint published in the member card: the configured external address, else the load
/// balancer's address once it has one, else the p2p Service's in-cluster name.
pub fn advertised_endpoint(node: &LedgerNode, p2p_service: Option<&Service>) -> String {
    if let Some(addr) = &node.spec.p2p.external_address {
        return addr.clone();
    }
    let ingress = p2p_service
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first());
    if let Some(host) = ingress.and_then(|i| i.hostname.clone().or_else(|| i.ip.clone())) {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        return format!("{host}:{PEER_PORT}");
    }
    format!(
        "{}.{}.svc:{PEER_PORT}",
        names::p2p_service(&node.name_any()),
        node.namespace().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    #[test]
    fn headless_service_exposes_every_port_and_publishes_not_ready_pods() {
        let s = headless_service(&node());
        let spec = s.spec.unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("node-a"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(
            ports,
            [
                ("api".into(), 7050),
                ("peer".into(), 7051),
                ("metrics".into(), 9464)
            ]
        );
        assert_eq!(spec.selector.unwrap(), selector_labels("node-a"));
    }

    #[test]
    fn p2p_service_follows_the_spec() {
        let s = p2p_service(&node());
        assert_eq!(s.metadata.name.as_deref(), Some("node-a-p2p"));
        assert_eq!(
            s.metadata.annotations.unwrap()["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec.load_balancer_source_ranges.unwrap(),
            ["203.0.113.0/24"]
        );
        assert_eq!(spec.ports.unwrap()[0].port, 7051);

        let s = p2p_service(&minimal_node());
        assert!(s.metadata.annotations.is_none());
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert!(spec.load_balancer_source_ranges.is_none());
        assert!(spec.ports.unwrap()[0].node_port.is_none());
    }

    #[test]
    fn advertised_endpoint_prefers_spec_then_load_balancer_then_cluster_dns() {
        assert_eq!(
            advertised_endpoint(&node(), None),
            "node.hospital-a.example.org:7051"
        );
        let n = minimal_node();
        assert_eq!(
            advertised_endpoint(&n, None),
            "node-b-p2p.hospital-b.svc:7051"
        );
        let mut svc = p2p_service(&n);
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("2001:db8::1".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        assert_eq!(advertised_endpoint(&n, Some(&svc)), "[2001:db8::1]:7051");
        assert!(medledger_api::genesis::is_endpoint(&advertised_endpoint(
            &n,
            Some(&svc)
        )));
        assert!(medledger_api::genesis::is_endpoint(&advertised_endpoint(
            &n, None
        )));
    }
}
