//! CEL rules shared by several kinds, built once so every kind says the same thing the same
//! way. Each rule's message tells the user what to fix.

use kube::core::{Message, Reason, Rule};

/// Regex of a DNS-1123 label (member names, chain ids).
pub const DNS_LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// Regex of a `host:port` endpoint: DNS name, IPv4 address or bracketed IPv6 address.
pub const ENDPOINT: &str = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*):[0-9]{1,5}$";

/// CEL that is true when `expr` (a string) is a well-formed `host:port` with a port in 1..=65535.
pub fn endpoint_expr(expr: &str) -> String {
    let port = format!("int({expr}.substring({expr}.lastIndexOf(':') + 1))");
    format!(
        "{expr}.matches('{}') && {port} >= 1 && {port} <= 65535",
        ENDPOINT.replace('\\', "\\\\")
    )
}

/// `self` is a `host:port` endpoint.
pub fn endpoint(field: &str) -> Rule {
    Rule::new(endpoint_expr("self")).message(Message::Message(format!(
        "{field} must be host:port, where host is a DNS name, an IPv4 address or a bracketed IPv6 address and port is 1-65535, e.g. node0.hospital-a.example.org:7051"
    )))
}

/// `self` is a DNS-1123 label.
pub fn dns_label(field: &str) -> Rule {
    Rule::new(format!("self.matches('{DNS_LABEL}')")).message(Message::Message(format!(
        "{field} must be a DNS label: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )))
}

/// `self` is lower-case hex of exactly `hex_chars` characters.
pub fn hex_key(field: &str, hex_chars: usize, what: &str) -> Rule {
    Rule::new(format!("self.matches('^[0-9a-f]{{{hex_chars}}}$')")).message(Message::Message(format!(
        "{field} must be {hex_chars} lower-case hex characters ({what}); copy it from the member card in the LedgerNode status"
    )))
}

/// `self` never changes once set.
pub fn immutable(field: &str, why_and_fix: &str) -> Rule {
    Rule::new("self == oldSelf")
        .message(Message::Message(format!(
            "{field} cannot change after creation: {why_and_fix}"
        )))
        .reason(Reason::FieldValueForbidden)
}

/// An optional field of `self` that can be neither added, removed nor changed.
pub fn immutable_optional(field: &str, why_and_fix: &str) -> Rule {
    Rule::new(format!(
        "has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
    ))
    .message(Message::Message(format!("{field} cannot be added, removed or changed after creation: {why_and_fix}")))
    .reason(Reason::FieldValueForbidden)
}

/// Schema of a `string -> host:port` map with bounded sizes, so the API server can bound the
/// cost of the CEL rule that checks every value.
pub fn endpoint_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 256,
        "additionalProperties": {"type": "string", "maxLength": 261},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_regex_agrees_with_the_genesis_check() {
        // The genesis check is the authority; the CEL regex must not accept what it refuses
        // (the port range is checked by the CEL expression around the regex).
        let re = |s: &str| {
            let port_ok = s
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u32>().ok())
                .is_some_and(|p| (1..=65535).contains(&p));
            regex_lite_match(ENDPOINT, s) && port_ok
        };
        for s in [
            "a:1",
            "node-0.ns.svc.cluster.local:7051",
            "127.0.0.1:9000",
            "[::1]:80",
            "",
            "a",
            ":80",
            "a:",
            "a:70000",
            "-a:1",
            "a b:1",
            "h:0",
        ] {
            assert_eq!(re(s), medledger_api::genesis::is_endpoint(s), "{s:?}");
        }
    }

    /// Evaluates the regex through the CEL engine, exactly as the rule would.
    fn regex_lite_match(re: &str, s: &str) -> bool {
        let schema = serde_json::json!({"type": "object", "properties": {"e": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": format!("self.e.matches('{}')", re.replace('\\', "\\\\"))}]});
        kube::core::cel::Validator::new()
            .validate(&schema, &serde_json::json!({"e": s}), None)
            .is_ok()
    }
}
