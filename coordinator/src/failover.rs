//! `failoverctl failover <ns>/<group>... --to <cluster>`: starts one operation per group
//! (protocol step 1, one conditional write of the group state each, made by the store) and notifies the
//! source and target inboxes (step 2).
//!
//! The source is the group's active cluster, read with a consistent `GetItem` just before
//! the start; the start itself is conditioned on it, so a change in between is refused, not
//! acted on. A failed notification is a warning: agents re-read the table on a timer, so a
//! lost message costs latency, not correctness.

use std::time::Duration;

use failover_messages::envelope::EnvelopeKind;
use failover_messages::inbox::Inbox;
use failover_messages::keys::GroupRef;
use failover_messages::protocol::start::{
    Blocker, Observed, Refusal, Request, StartPlan, decide_start,
};
use failover_messages::records::{Mode, Operation};
use failover_messages::store::{StartOutcome, StartRequest};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::Context;
use crate::error::{CommandError, report};
use crate::output::{Render, table};
use crate::watch::WatchResult;

/// How long the coordinator's lease lasts before an agent takes it over and renews it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

/// The sender name on the coordinator's messages.
pub const SENDER: &str = "coordinator";

/// What `failoverctl failover` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverRequest {
    /// The groups to move, in command-line order.
    pub groups: Vec<GroupRef>,
    /// The cluster they move to.
    pub target: String,
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// Do not wait for the graceful handoff: drop the active-cluster condition; the target
    /// promotes once the source released its side or its lease is certainly over.
    pub force: bool,
    /// Forced, and the requester vouches that the source is down (required for a group its
    /// cluster keeps serving without DynamoDB; the target then promotes at once).
    pub source_is_down: bool,
    /// Why (required with `force`).
    pub reason: String,
    /// Who asks (`failoverctl:<user>`).
    pub requested_by: String,
    /// The first lease.
    pub lease_ttl: Duration,
}

/// One started operation.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartedOperation {
    /// The group.
    pub group: GroupRef,
    /// The operation id (`failoverctl watch <id>`, `failoverctl abort <id>`).
    pub operation_id: String,
    /// The cluster the group moves away from.
    pub source: String,
    /// The cluster the group moves to.
    pub target: String,
    /// The mode.
    pub mode: Mode,
    /// The group's epoch of this operation.
    pub epoch: u64,
    /// Forced.
    pub force: bool,
    /// The clusters whose inbox got an `OperationStarted` message.
    pub notified: Vec<String>,
    /// Notifications that failed (agents still find the operation on their timer).
    pub warnings: Vec<String>,
}

impl StartedOperation {
    fn from_operation(op: &Operation) -> Self {
        Self {
            group: op.group.clone(),
            operation_id: op.id.clone(),
            source: op.source.clone(),
            target: op.target.clone(),
            mode: op.mode,
            epoch: op.epoch,
            force: op.force,
            notified: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// The result of `failoverctl failover`: the operations started.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverResult {
    /// One per group that started, in command-line order.
    pub operations: Vec<StartedOperation>,
}

/// The error `failoverctl` reports for a refused start: "not found" for an unregistered
/// group or an unknown cluster, "refused" with the refusal's words otherwise.
pub fn refused(refusal: Refusal, table: &str) -> CommandError {
    match refusal.blocker {
        Blocker::NotRegistered => CommandError::GroupNotFound {
            group: refusal.group,
            table: table.to_owned(),
        },
        _ => CommandError::StartRefused {
            why: refusal.message(),
            group: refusal.group,
        },
    }
}

/// What `failoverctl failover` decides for `group` from what it read: the start to make, or
/// the first refusal, the one it reports ([`decide_start`], as every front end; render it
/// with [`refused`]).
pub fn check_start(
    group: &GroupRef,
    observed: &Observed<'_>,
    req: &FailoverRequest,
    now: jiff::Timestamp,
) -> Result<StartPlan, Box<Refusal>> {
    let ask = Request {
        group,
        target: &req.target,
        source: None,
        force: req.force,
        source_is_down: req.source_is_down,
        op_id: None,
    };
    decide_start(observed, &ask, now)
        .map_err(|refusals| Box::new(refusals.into_iter().next().expect("a refusal")))
}

/// How many groups of one `failoverctl failover` are started at once.
pub const CONCURRENT_STARTS: usize = 8;

/// Starts the operations and notifies the clusters. Returns the started operations and,
/// separately, the groups that were refused or not found (the first decides the exit code).
pub async fn failover(
    ctx: &Context,
    req: &FailoverRequest,
) -> Result<(FailoverResult, Vec<CommandError>), CommandError> {
    let queue = ctx.queues.inbox_queue_name(&req.target);
    if !ctx.inbox_known(&req.target, &queue).await? {
        return Err(CommandError::UnknownCluster {
            cluster: req.target.clone(),
            queue,
        });
    }
    let store = ctx.store();
    let inbox = ctx.inbox(SENDER);
    let (store, inbox) = (&store, &inbox);
    // Groups are independent (one conditional start each): up to CONCURRENT_STARTS at once,
    // results in the order the groups were named.
    let results: Vec<_> = stream::iter(&req.groups)
        .map(|group| async move {
            let op = start_one(ctx, store, req, group).await?;
            let mut view = StartedOperation::from_operation(&op);
            notify(
                inbox,
                &op,
                EnvelopeKind::OperationStarted,
                &mut view.notified,
                &mut view.warnings,
            )
            .await;
            Ok::<_, CommandError>(view)
        })
        .buffered(CONCURRENT_STARTS)
        .collect()
        .await;
    let mut started = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(view) => started.push(view),
            Err(e) => errors.push(e),
        }
    }
    Ok((
        FailoverResult {
            operations: started,
        },
        errors,
    ))
}

async fn start_one(
    ctx: &Context,
    store: &failover_messages::store::Store,
    req: &FailoverRequest,
    group: &GroupRef,
) -> Result<Operation, CommandError> {
    let err = |e| CommandError::from_store(&ctx.table, e);
    let view = store
        .read_start_view(group, &req.target)
        .await
        .map_err(err)?;
    let plan = check_start(group, &view.observed(Some(true)), req, view.read_at)
        .map_err(|r| refused(*r, &ctx.table))?;
    let outcome = store
        .start_operation(StartRequest {
            group: group.clone(),
            source: plan.source,
            target: req.target.clone(),
            mode: req.mode,
            force: req.force,
            source_is_down: req.source_is_down,
            reason: req.reason.clone(),
            requested_by: req.requested_by.clone(),
            lease_ttl: req.lease_ttl,
            op_id: None,
        })
        .await
        .map_err(err)?;
    match outcome.refusal(group) {
        None => match outcome {
            StartOutcome::Started(op) => Ok(op),
            _ => unreachable!("only Started has no refusal"),
        },
        Some(r) => Err(refused(r, &ctx.table)),
    }
}

/// Sends `kind` for `op` to the source and the target inbox; failures become warnings.
pub async fn notify(
    inbox: &Inbox,
    op: &Operation,
    kind: EnvelopeKind,
    notified: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    for (cluster, sent) in inbox
        .notify_operation(op, kind, jiff::Timestamp::now())
        .await
    {
        match sent {
            Ok(_) => notified.push(cluster),
            Err(e) => {
                let text = report(&e).trim_end().replace('\n', "; ");
                tracing::warn!(cluster = %cluster, operation = %op.id, "notification failed: {text}");
                warnings.push(format!(
                    "could not notify {cluster} ({text}); its agent finds the operation on its next re-read"
                ));
            }
        }
    }
}

/// The result of `failoverctl failover --wait` for scripts (`-o json|yaml`): the operations
/// started and how the wait ended, in one document.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverWaited {
    /// The operations started.
    pub operations: Vec<StartedOperation>,
    /// How the wait ended.
    pub wait: WatchResult,
}

impl Render for FailoverWaited {
    fn plain(&self) -> String {
        let mut out = FailoverResult {
            operations: self.operations.clone(),
        }
        .plain();
        out.push_str(&self.wait.plain());
        out
    }

    fn table(&self) -> String {
        self.wait.table()
    }
}

impl Render for FailoverResult {
    fn plain(&self) -> String {
        let mut out = String::new();
        for op in &self.operations {
            out.push_str(&format!(
                "{}: operation {} started ({} -> {}, {}{}, epoch {})\n",
                op.group,
                op.operation_id,
                op.source,
                op.target,
                op.mode,
                if op.force { ", forced" } else { "" },
                op.epoch
            ));
            for w in &op.warnings {
                out.push_str(&format!("  warning: {w}\n"));
            }
        }
        if self.operations.is_empty() {
            out.push_str("no operation started\n");
        }
        out
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 6]> = self
            .operations
            .iter()
            .map(|op| {
                [
                    op.group.to_string(),
                    op.operation_id.clone(),
                    op.source.clone(),
                    op.target.clone(),
                    op.mode.to_string(),
                    op.epoch.to_string(),
                ]
            })
            .collect();
        table(
            ["GROUP", "OPERATION", "SOURCE", "TARGET", "MODE", "EPOCH"],
            &rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn started() -> StartedOperation {
        StartedOperation {
            group: "shop/orders".parse().unwrap(),
            operation_id: "op-1".into(),
            source: "east".into(),
            target: "west".into(),
            mode: Mode::Consistency,
            epoch: 4,
            force: false,
            notified: vec!["east".into()],
            warnings: vec!["could not notify west (boom); later".into()],
        }
    }

    #[test]
    fn plain_names_the_operation_per_group_with_warnings() {
        let text = render(
            &FailoverResult {
                operations: vec![started()],
            },
            OutputFormat::Plain,
        );
        assert_eq!(
            text,
            "shop/orders: operation op-1 started (east -> west, CONSISTENCY, epoch 4)\n  \
             warning: could not notify west (boom); later\n"
        );
    }

    #[test]
    fn json_and_yaml_carry_the_operation_ids() {
        let result = FailoverResult {
            operations: vec![started()],
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(&result, OutputFormat::Json)).unwrap();
        assert_eq!(json["operations"][0]["operationId"], "op-1");
        assert_eq!(json["operations"][0]["mode"], "CONSISTENCY");
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(&result, OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
        assert!(render(&result, OutputFormat::Table).starts_with("GROUP"));
    }

    #[test]
    fn a_waited_failover_is_one_document_for_scripts() {
        let waited = FailoverWaited {
            operations: vec![started()],
            wait: WatchResult {
                operations: vec![crate::watch::WatchedOperation {
                    operation_id: "op-1".into(),
                    group: "shop/orders".parse().unwrap(),
                    phase: failover_messages::records::Phase::Succeeded,
                    finished: true,
                    message: None,
                    pending_steps: Vec::new(),
                    total_ms: None,
                    downtime_ms: None,
                }],
                timed_out: false,
                elapsed_seconds: 2.5,
            },
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(&waited, OutputFormat::Json)).unwrap();
        assert_eq!(json["operations"][0]["operationId"], "op-1");
        assert_eq!(json["wait"]["operations"][0]["phase"], "Succeeded");
        assert_eq!(json["wait"]["timedOut"], false);
        let plain = render(&waited, OutputFormat::Plain);
        assert!(
            plain.ends_with("shop/orders: operation op-1 finished Succeeded\n"),
            "{plain}"
        );
    }

    #[test]
    fn store_refusals_name_the_holder_or_the_active_cluster() {
        let group: GroupRef = "shop/orders".parse().unwrap();
        let why = |outcome: StartOutcome| refused(outcome.refusal(&group).unwrap(), "t");
        let expires = "2026-11-26T10:00:00Z".parse().unwrap();
        let held = why(StartOutcome::LeaseHeld {
            holder: "failoverctl:alice".into(),
            op_id: "op-7".into(),
            expires,
        })
        .to_string();
        assert!(
            held.contains("op-7") && held.contains("failoverctl:alice"),
            "{held}"
        );
        let claimed = why(StartOutcome::PromotionClaimed {
            group: group.clone(),
            claimed_by: "west".into(),
            op_id: None,
        });
        assert!(claimed.to_string().contains("claimed by west"), "{claimed}");
        assert_eq!(claimed.exit_status(), crate::exit::ExitStatus::Refused);
        let active = why(StartOutcome::NotActive {
            group: group.clone(),
            active: "north".into(),
        });
        assert!(active.to_string().contains("north"), "{active}");
        let missing = why(StartOutcome::NotRegistered {
            group: group.clone(),
        });
        assert_eq!(missing.exit_status(), crate::exit::ExitStatus::NotFound);
    }
}
