//! Approval policies in Fabric's grammar: `OutOf(n, p1, p2, ...)`, with `AND(...)` (all of)
//! and `OR(...)` (one of) as special cases, nested freely.
//!
//! Principals are names resolved by the contract that evaluates the policy:
//! - access policies: `patient`, `custodian`, `ethics` (an ethics-board participant of the
//!   custodian hospital), `member:<name>`;
//! - governance policies: `members` (each current member counts once) and `member:<name>`.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Principal(String),
    OutOf(usize, Vec<Policy>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy {text:?} is invalid: {reason}; write e.g. OutOf(2, patient, custodian)")]
pub struct PolicyError {
    pub text: String,
    pub reason: String,
}

/// Principals an access or governance policy may name.
pub const ACCESS_PRINCIPALS: [&str; 3] = ["patient", "custodian", "ethics"];

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let err = |reason: String| PolicyError {
            text: text.to_string(),
            reason,
        };
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let policy = p.policy().map_err(err)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(err(format!("unexpected text at position {}", p.i)));
        }
        Ok(policy)
    }

    /// The default for access to a record: the patient AND the custodian.
    pub fn default_record_access() -> Policy {
        Policy::OutOf(
            2,
            vec![
                Policy::Principal("patient".into()),
                Policy::Principal("custodian".into()),
            ],
        )
    }

    /// The default for research use: patient, custodian and an ethics board.
    pub fn default_research_access() -> Policy {
        Policy::OutOf(
            3,
            ["patient", "custodian", "ethics"]
                .into_iter()
                .map(|p| Policy::Principal(p.into()))
                .collect(),
        )
    }

    /// Whether the approvals satisfy the policy. `members` is the set of current member
    /// names; the principal `members` stands for each of them.
    pub fn satisfied(&self, approved: &BTreeSet<String>, members: &BTreeSet<String>) -> bool {
        match self {
            Policy::Principal(p) => approved.contains(p),
            Policy::OutOf(n, subs) => {
                let mut count = 0;
                for s in subs {
                    match s {
                        Policy::Principal(p) if p == "members" => {
                            count += members
                                .iter()
                                .filter(|m| approved.contains(&format!("member:{m}")))
                                .count()
                        }
                        s if s.satisfied(approved, members) => count += 1,
                        _ => {}
                    }
                }
                count >= *n
            }
        }
    }

    /// Every principal named in the policy.
    pub fn principals(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut BTreeSet<String>) {
        match self {
            Policy::Principal(p) => {
                out.insert(p.clone());
            }
            Policy::OutOf(_, subs) => subs.iter().for_each(|s| s.collect(out)),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Principal(p) => f.write_str(p),
            Policy::OutOf(n, subs) => {
                write!(f, "OutOf({n}")?;
                for s in subs {
                    write!(f, ", {s}")?;
                }
                f.write_str(")")
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn word(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"-_:.".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn policy(&mut self) -> Result<Policy, String> {
        self.depth += 1;
        if self.depth > 8 {
            return Err("nested deeper than 8 levels".into());
        }
        let w = self.word();
        if w.is_empty() {
            return Err(format!(
                "expected a principal or OutOf/AND/OR at position {}",
                self.i
            ));
        }
        let out = if self.eat(b'(') {
            let op = w.to_ascii_lowercase();
            let n = if op == "outof" {
                let n: usize = self
                    .word()
                    .parse()
                    .map_err(|_| "OutOf needs a count first".to_string())?;
                if !self.eat(b',') {
                    return Err("expected ',' after the OutOf count".into());
                }
                Some(n)
            } else if op == "and" || op == "or" {
                None
            } else {
                return Err(format!("unknown operator {w:?}: use OutOf, AND or OR"));
            };
            let mut subs = vec![self.policy()?];
            while self.eat(b',') {
                subs.push(self.policy()?);
            }
            if !self.eat(b')') {
                return Err(format!("expected ')' at position {}", self.i));
            }
            let n = match (op.as_str(), n) {
                ("and", _) => subs.len(),
                ("or", _) => 1,
                (_, Some(n)) => n,
                _ => unreachable!(),
            };
            if n == 0
                || (n > subs.len()
                    && !subs
                        .iter()
                        .any(|s| s == &Policy::Principal("members".into())))
            {
                return Err(format!(
                    "OutOf({n}, ...) can never be met with {} principals",
                    subs.len()
                ));
            }
            Policy::OutOf(n, subs)
        } else {
            Policy::Principal(w)
        };
        self.depth -= 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_evaluates_fabric_style_policies() {
        let p = Policy::parse("OutOf(2, patient, custodian)").unwrap();
        assert_eq!(p, Policy::default_record_access());
        assert_eq!(p.to_string(), "OutOf(2, patient, custodian)");
        let none = set(&[]);
        assert!(!p.satisfied(&set(&["patient"]), &none));
        assert!(p.satisfied(&set(&["patient", "custodian"]), &none));

        let p = Policy::parse("AND(patient, OR(custodian, member:hospital-b))").unwrap();
        assert_eq!(
            p.to_string(),
            "OutOf(2, patient, OutOf(1, custodian, member:hospital-b))"
        );
        assert!(p.satisfied(&set(&["patient", "member:hospital-b"]), &none));
        assert!(!p.satisfied(&set(&["custodian"]), &none));
    }

    #[test]
    fn members_counts_each_current_member() {
        let p = Policy::parse("OutOf(2, members)").unwrap();
        let members = set(&["a", "b", "c"]);
        assert!(!p.satisfied(&set(&["member:a"]), &members));
        assert!(p.satisfied(&set(&["member:a", "member:c"]), &members));
        // An approval by someone no longer a member does not count.
        assert!(!p.satisfied(&set(&["member:a", "member:x"]), &members));
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for bad in [
            "",
            "OutOf(3, patient, custodian)",
            "OutOf(0, patient)",
            "XOR(patient)",
            "OutOf(patient)",
            "AND(patient",
            "AND(patient) extra",
        ] {
            let e = Policy::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("OutOf(2, patient, custodian)"),
                "{e}"
            );
        }
    }
}
