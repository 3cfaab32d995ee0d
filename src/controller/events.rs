//! Kubernetes Events on the policy and on the target, naming the incident as the related object.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};
use tracing::warn;

use crate::v1alpha1::{Phase, Remediation};

/// Event reasons homeostat records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// An incident opened.
    FaultDetected,
    /// An action was accepted by the apiserver.
    ActionApplied,
    /// An action was refused for now (a PodDisruptionBudget).
    ActionBlocked,
    /// An action was refused for good.
    ActionFailed,
    /// An incident ended in the given phase.
    Ended(Phase),
}

impl EventReason {
    /// The reason as recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FaultDetected => "FaultDetected",
            Self::ActionApplied => "ActionApplied",
            Self::ActionBlocked => "ActionBlocked",
            Self::ActionFailed => "ActionFailed",
            Self::Ended(Phase::Succeeded) => "RemediationSucceeded",
            Self::Ended(Phase::Failed) => "RemediationFailed",
            Self::Ended(Phase::Escalated) => "RemediationEscalated",
            Self::Ended(Phase::DryRun) => "RemediationDryRun",
            Self::Ended(Phase::Shadowed) => "RemediationShadowed",
            Self::Ended(_) => "RemediationUpdated",
        }
    }

    fn type_(self) -> EventType {
        match self {
            Self::ActionApplied
            | Self::Ended(Phase::Succeeded | Phase::DryRun | Phase::Shadowed) => EventType::Normal,
            _ => EventType::Warning,
        }
    }
}

/// Where an Event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// The policy only.
    Policy,
    /// The policy and the target workload.
    PolicyAndTarget,
}

/// The Event reason of a hold: `ScaleRefused` when a Scale would fight the owner of the replicas
/// (KEDA, a GitOps tool, several autoscalers), else `ActionHeld`.
pub fn held_reason(refusal: &str) -> &'static str {
    if crate::remediation::owners::is_owner_refusal(refusal) {
        "ScaleRefused"
    } else {
        "ActionHeld"
    }
}

/// Records a Warning Event on a policy that a guard (refusal reason `refusal`) holds its firing
/// fault.
pub async fn publish_policy(
    recorder: &Recorder,
    ns: &str,
    name: &str,
    uid: &str,
    refusal: &str,
    note: &str,
) {
    let policy = ObjectReference {
        api_version: Some("homeostat.dev/v1alpha1".into()),
        kind: Some("RemediationPolicy".into()),
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        uid: Some(uid.to_string()),
        ..ObjectReference::default()
    };
    let ev = Event {
        type_: EventType::Warning,
        reason: held_reason(refusal).into(),
        note: Some(crate::bounded::message(note)),
        action: "Guard".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &policy).await {
        warn!(error = %crate::kube_message(&e), policy = %format!("{ns}/{name}"), "could not record an Event on the policy; continuing");
    }
}

/// Records an Event about `rem` on its policy (and its target), logging a failure and going on.
pub async fn publish(
    recorder: &Recorder,
    policy: &ObjectReference,
    rem: &Remediation,
    reason: EventReason,
    action: &str,
    note: String,
    on: On,
) {
    let ev = Event {
        type_: reason.type_(),
        reason: reason.as_str().into(),
        note: Some(crate::bounded::message(&note)),
        action: action.into(),
        secondary: Some(rem.object_ref(&())),
    };
    if let Err(e) = recorder.publish(&ev, policy).await {
        warn!(error = %crate::kube_message(&e), remediation = ?rem.metadata.name, "could not record an Event on the policy; continuing");
    }
    if on == On::PolicyAndTarget {
        let target = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some(rem.spec.target.kind.as_str().into()),
            name: Some(rem.spec.target.name.clone()),
            namespace: rem.metadata.namespace.clone(),
            ..ObjectReference::default()
        };
        if let Err(e) = recorder.publish(&ev, &target).await {
            warn!(error = %crate::kube_message(&e), target = %rem.spec.target, "could not record an Event on the target; continuing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_refused_by_an_owner_has_its_own_event_reason() {
        use crate::remediation::owners;
        for r in [
            owners::OWNED_BY_KEDA,
            owners::OWNED_BY_GITOPS,
            owners::SEVERAL_AUTOSCALERS,
        ] {
            assert_eq!(held_reason(r), "ScaleRefused");
        }
        assert_eq!(held_reason("Cooldown"), "ActionHeld");
        assert_eq!(held_reason("OwnedByAnotherPolicy"), "ActionHeld");
    }
}
