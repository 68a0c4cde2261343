//! `failoverctl suspend <namespace>/<group>` and `failoverctl resume <namespace>/<group>`:
//! set or clear the `suspended` flag of the group's state record
//! ([`Store::set_suspended`](failover_messages::store::Store::set_suspended), one conditional
//! `UpdateItem`).
//!
//! A suspended group refuses every new operation (`failover`, a `Failover` object, `plan`
//! names it as a blocker) until it is resumed. Suspending does not touch an operation in
//! flight: it runs to its end (or is aborted as usual), and the result says that one is
//! running. Both commands are idempotent: suspending a suspended group (or resuming one
//! that is not suspended) writes nothing and says so. An unregistered group is
//! [`CommandError::GroupNotFound`] (exit 7), naming the group and the table.

use failover_messages::keys::GroupRef;
use failover_messages::store::SuspendOutcome;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, or_dash, table};

/// What `suspend` or `resume` did.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SuspendChange {
    /// The flag was changed.
    Changed,
    /// The flag was already as asked; nothing was written.
    AlreadySo,
}

/// The result of `failoverctl suspend` or `failoverctl resume`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuspendResult {
    /// The group.
    pub group: GroupRef,
    /// The table.
    pub table: String,
    /// The flag as it is now.
    pub suspended: bool,
    /// Changed now, or already so.
    pub change: SuspendChange,
    /// The group's active cluster.
    pub active_cluster: String,
    /// The group's epoch.
    pub epoch: u64,
    /// The operation in flight, which suspending does not stop.
    pub operation_in_flight: Option<String>,
}

/// Sets the `suspended` flag of `group` to `suspended`.
pub async fn set_suspended(
    ctx: &Context,
    group: &GroupRef,
    suspended: bool,
) -> Result<SuspendResult, CommandError> {
    let outcome = ctx
        .store()
        .set_suspended(group, suspended)
        .await
        .map_err(|e| CommandError::from_store(&ctx.table, e))?;
    let (state, change) = match outcome {
        SuspendOutcome::Changed(state) => (state, SuspendChange::Changed),
        SuspendOutcome::Unchanged(state) => (state, SuspendChange::AlreadySo),
        SuspendOutcome::NotRegistered => {
            return Err(CommandError::GroupNotFound {
                group: group.clone(),
                table: ctx.table.clone(),
            });
        }
    };
    Ok(SuspendResult {
        group: state.group,
        table: ctx.table.clone(),
        suspended: state.suspended,
        change,
        active_cluster: state.active_cluster,
        epoch: state.epoch,
        operation_in_flight: state.op_id,
    })
}

impl Render for SuspendResult {
    fn plain(&self) -> String {
        let mut out = match (self.suspended, self.change) {
            (true, SuspendChange::Changed) => format!(
                "suspended group {} in table {}: no new operation may start until `failoverctl resume {}`\n",
                self.group, self.table, self.group
            ),
            (true, SuspendChange::AlreadySo) => format!(
                "group {} in table {} is already suspended; nothing changed\n",
                self.group, self.table
            ),
            (false, SuspendChange::Changed) => format!(
                "resumed group {} in table {}: operations may start again\n",
                self.group, self.table
            ),
            (false, SuspendChange::AlreadySo) => format!(
                "group {} in table {} is not suspended; nothing changed\n",
                self.group, self.table
            ),
        };
        if let (true, Some(op)) = (self.suspended, &self.operation_in_flight) {
            out.push_str(&format!(
                "operation {op} is in flight and continues (suspending only refuses new ones; \
                 `failoverctl abort {op}` stops it)\n"
            ));
        }
        out
    }

    fn table(&self) -> String {
        let result = match self.change {
            SuspendChange::Changed => "changed",
            SuspendChange::AlreadySo => "unchanged",
        };
        table(
            [
                "GROUP",
                "ACTIVE",
                "EPOCH",
                "SUSPENDED",
                "OPERATION",
                "RESULT",
            ],
            &[[
                self.group.to_string(),
                self.active_cluster.clone(),
                self.epoch.to_string(),
                if self.suspended { "yes" } else { "no" }.to_owned(),
                or_dash(self.operation_in_flight.as_ref()),
                result.to_owned(),
            ]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn result(suspended: bool, change: SuspendChange, op: Option<&str>) -> SuspendResult {
        SuspendResult {
            group: "shop/orders".parse().unwrap(),
            table: "failover".into(),
            suspended,
            change,
            active_cluster: "east".into(),
            epoch: 3,
            operation_in_flight: op.map(str::to_owned),
        }
    }

    #[test]
    fn plain_says_what_changed_and_how_to_undo_it() {
        let text = render(
            &result(true, SuspendChange::Changed, None),
            OutputFormat::Plain,
        );
        assert_eq!(
            text,
            "suspended group shop/orders in table failover: no new operation may start until \
             `failoverctl resume shop/orders`\n"
        );
        let again = render(
            &result(true, SuspendChange::AlreadySo, None),
            OutputFormat::Plain,
        );
        assert!(
            again.contains("already suspended; nothing changed"),
            "{again}"
        );
        let resumed = render(
            &result(false, SuspendChange::Changed, None),
            OutputFormat::Plain,
        );
        assert!(
            resumed.starts_with("resumed group shop/orders"),
            "{resumed}"
        );
        let not = render(
            &result(false, SuspendChange::AlreadySo, Some("op-1")),
            OutputFormat::Plain,
        );
        assert!(not.contains("is not suspended; nothing changed"), "{not}");
        assert!(
            !not.contains("op-1"),
            "resume says nothing of the operation: {not}"
        );
    }

    #[test]
    fn an_operation_in_flight_is_named_and_said_to_continue() {
        let text = render(
            &result(true, SuspendChange::Changed, Some("op-1")),
            OutputFormat::Plain,
        );
        assert!(
            text.contains("operation op-1 is in flight and continues"),
            "{text}"
        );
        assert!(text.contains("failoverctl abort op-1"), "{text}");
    }

    #[test]
    fn table_and_json_carry_the_flag_and_the_change() {
        assert_eq!(
            render(
                &result(true, SuspendChange::Changed, Some("op-1")),
                OutputFormat::Table
            ),
            "GROUP        ACTIVE  EPOCH  SUSPENDED  OPERATION  RESULT\n\
             shop/orders  east    3      yes        op-1       changed\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(
            &result(false, SuspendChange::AlreadySo, None),
            OutputFormat::Json,
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "group": "shop/orders", "table": "failover", "suspended": false,
                "change": "alreadySo", "activeCluster": "east", "epoch": 3,
                "operationInFlight": null
            })
        );
    }
}
