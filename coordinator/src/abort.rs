//! `failoverctl abort <operation-id>`: requests an abort (one conditional write made by the store:
//! refused once the target has claimed the promotion) and notifies the source and the
//! target with `AbortRequested`. The source's agent then reactivates its side and closes
//! the operation as `Aborted`; `failoverctl watch <id>` follows that.

use failover_messages::envelope::EnvelopeKind;
use failover_messages::keys::GroupRef;
use failover_messages::store::Outcome;
use jiff::Timestamp;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::failover::{SENDER, notify};
use crate::output::{Render, table};

/// The result of `failoverctl abort`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AbortResult {
    /// The operation.
    pub operation_id: String,
    /// Its group.
    pub group: GroupRef,
    /// The cluster that stays (or becomes again) active.
    pub source: String,
    /// The cluster that will not be promoted.
    pub target: String,
    /// When the abort was (first) requested.
    pub requested_at: Timestamp,
    /// Clusters notified.
    pub notified: Vec<String>,
    /// Notifications that failed.
    pub warnings: Vec<String>,
}

/// Why the store refused an abort, in words; `None` for `Done`.
pub fn abort_refusal<T: std::fmt::Debug>(outcome: &Outcome<T>) -> Option<String> {
    Some(match outcome {
        Outcome::Done(_) => return None,
        Outcome::PromotionClaimed { by, .. } => format!(
            "promotion already claimed by {}; only forward is possible",
            by.as_deref().unwrap_or("the target")
        ),
        Outcome::AlreadyFinished { phase } => format!("the operation is already closed ({phase})"),
        Outcome::StaleEpoch(_) => {
            "the operation is no longer in flight on its group (a newer operation took over)"
                .to_owned()
        }
        other => format!("the store answered {other:?}"),
    })
}

/// Requests the abort and notifies both clusters.
pub async fn abort(ctx: &Context, op_id: &str) -> Result<AbortResult, CommandError> {
    let store = ctx.store();
    let err = |e| CommandError::from_store(&ctx.table, e);
    let not_found = || CommandError::OperationNotFound {
        op_id: op_id.to_owned(),
        table: ctx.table.clone(),
    };
    let op = store
        .get_operation(op_id)
        .await
        .map_err(err)?
        .ok_or_else(not_found)?;
    let outcome = store.request_abort(op_id).await.map_err(err)?;
    let requested_at = match outcome {
        Outcome::Done(at) => at,
        Outcome::OperationNotFound { .. } => return Err(not_found()),
        Outcome::PromotionClaimed { at, by: None } => {
            // The store does not always say who claimed: the group state does, and only the
            // target claims an unforced promotion.
            let by = store
                .get_group_state(&op.group)
                .await
                .map_err(err)?
                .and_then(|s| s.promotion_claimed_by)
                .unwrap_or_else(|| op.target.clone());
            return Err(CommandError::AbortRefused {
                op_id: op_id.to_owned(),
                why: abort_refusal(&Outcome::<()>::PromotionClaimed { at, by: Some(by) })
                    .unwrap_or_default(),
            });
        }
        other => {
            return Err(CommandError::AbortRefused {
                op_id: op_id.to_owned(),
                why: abort_refusal(&other).unwrap_or_default(),
            });
        }
    };
    let inbox = ctx.inbox(SENDER);
    let mut notified = Vec::new();
    let mut warnings = Vec::new();
    notify(
        &inbox,
        &op,
        EnvelopeKind::AbortRequested,
        &mut notified,
        &mut warnings,
    )
    .await;
    Ok(AbortResult {
        operation_id: op.id,
        group: op.group,
        source: op.source,
        target: op.target,
        requested_at,
        notified,
        warnings,
    })
}

impl Render for AbortResult {
    fn plain(&self) -> String {
        let mut out = format!(
            "abort of operation {} ({}: {} -> {}) requested at {}; {} reactivates its side \
             (follow it with `failoverctl watch {}`)\n",
            self.operation_id,
            self.group,
            self.source,
            self.target,
            self.requested_at,
            self.source,
            self.operation_id
        );
        for w in &self.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        out
    }

    fn table(&self) -> String {
        table(
            ["OPERATION", "GROUP", "SOURCE", "TARGET", "ABORT REQUESTED"],
            &[[
                self.operation_id.clone(),
                self.group.to_string(),
                self.source.clone(),
                self.target.clone(),
                self.requested_at.to_string(),
            ]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};
    use failover_messages::records::Phase;

    #[test]
    fn a_claimed_promotion_refusal_names_the_claimer() {
        let why = abort_refusal(&Outcome::<()>::PromotionClaimed {
            at: None,
            by: Some("west".into()),
        })
        .unwrap();
        assert_eq!(
            why,
            "promotion already claimed by west; only forward is possible"
        );
        assert!(
            abort_refusal(&Outcome::<()>::AlreadyFinished {
                phase: Phase::Succeeded
            })
            .unwrap()
            .contains("Succeeded")
        );
        assert!(abort_refusal(&Outcome::Done(())).is_none());
    }

    #[test]
    fn renderers_name_the_operation() {
        let r = AbortResult {
            operation_id: "op-1".into(),
            group: "shop/orders".parse().unwrap(),
            source: "east".into(),
            target: "west".into(),
            requested_at: "2026-11-26T10:00:00Z".parse().unwrap(),
            notified: vec!["east".into(), "west".into()],
            warnings: vec![],
        };
        let plain = render(&r, OutputFormat::Plain);
        assert!(
            plain.starts_with("abort of operation op-1 (shop/orders: east -> west)"),
            "{plain}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(json["operationId"], "op-1");
        assert_eq!(json["notified"], serde_json::json!(["east", "west"]));
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(&r, OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
    }
}
