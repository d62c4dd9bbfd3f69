//! Status conditions shared by every kind: `Ready`, `Progressing`, `Degraded`, stored as a list
//! keyed on `type` (a map list for server-side apply) in the shape of `metav1.Condition`.
//!
//! A condition's `lastTransitionTime` changes only when its `status` changes: a new reason or
//! message on the same status keeps the old time, so a steady object keeps a steady status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What a controller concluded about one condition, before transition times are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Observed {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Merges what was observed into the current conditions. Conditions of other types are kept;
/// `lastTransitionTime` is carried over unless the status flipped.
pub fn merge(
    current: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current
        .iter()
        .filter(|c| !observed.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    for o in observed {
        let status = status_str(o.status);
        let last_transition_time = match current.iter().find(|c| c.type_ == o.type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: o.type_.to_string(),
            status: status.to_string(),
            reason: o.reason.clone(),
            message: o.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| {
        order(&a.type_)
            .cmp(&order(&b.type_))
            .then(a.type_.cmp(&b.type_))
    });
    out
}

fn order(t: &str) -> u8 {
    match t {
        READY => 0,
        PROGRESSING => 1,
        DEGRADED => 2,
        _ => 3,
    }
}

/// Whether a condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The standard triple: Ready, Progressing and Degraded from one verdict.
pub fn triple(state: Health, reason: &str, message: &str) -> Vec<Observed> {
    let (ready, progressing, degraded) = match state {
        Health::Ready => (true, false, false),
        Health::Progressing => (false, true, false),
        Health::Degraded => (false, false, true),
    };
    vec![
        Observed::new(READY, ready, reason, message),
        Observed::new(PROGRESSING, progressing, reason, message),
        Observed::new(DEGRADED, degraded, reason, message),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ready,
    Progressing,
    Degraded,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let first = merge(
            &[],
            &triple(Health::Progressing, "Deploying", "creating"),
            Some(1),
            t(0),
        );
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|c| c.last_transition_time == Time(t(0))));

        // Same verdict, new message: no transition.
        let second = merge(
            &first,
            &triple(Health::Progressing, "Deploying", "waiting for pod"),
            Some(1),
            t(10),
        );
        assert!(second.iter().all(|c| c.last_transition_time == Time(t(0))));
        assert_eq!(find(&second, READY).unwrap().message, "waiting for pod");

        // Ready: Ready and Progressing flip, Degraded stays False with its old time.
        let third = merge(
            &second,
            &triple(Health::Ready, "Running", "ok"),
            Some(2),
            t(20),
        );
        assert_eq!(
            find(&third, READY).unwrap().last_transition_time,
            Time(t(20))
        );
        assert_eq!(
            find(&third, PROGRESSING).unwrap().last_transition_time,
            Time(t(20))
        );
        assert_eq!(
            find(&third, DEGRADED).unwrap().last_transition_time,
            Time(t(0))
        );
        assert_eq!(find(&third, READY).unwrap().observed_generation, Some(2));
        assert!(is_true(&third, READY));
        assert!(!is_true(&third, DEGRADED));
    }

    #[test]
    fn other_condition_types_are_kept_and_order_is_stable() {
        let custom = Condition {
            type_: "KeysGenerated".into(),
            status: "True".into(),
            reason: "Generated".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(0)),
        };
        let merged = merge(
            std::slice::from_ref(&custom),
            &triple(Health::Degraded, "Bad", "bad"),
            None,
            t(5),
        );
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, PROGRESSING, DEGRADED, "KeysGenerated"]);
        assert_eq!(merged[3], custom);
    }
}
