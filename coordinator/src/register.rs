//! `failoverctl register <namespace>/<group> --active <cluster>`: creates the group's state
//! record at epoch 0 with `cluster` active ([`Store::register_group`](failover_messages::store::Store::register_group)).
//!
//! The cluster must be known: its inbox queue (`<prefix><cluster>`, made by
//! `failoverctl setup`) must exist, otherwise no agent could ever be told about the group
//! and the command fails with [`CommandError::UnknownCluster`] before writing anything.
//! Registering again with the same active cluster changes nothing and succeeds; with
//! another active cluster it is refused ([`CommandError::ActiveElsewhere`]): moving a group
//! takes a failover.
//!
//! Either way the active cluster's inbox then gets a `GroupRegistered` wake-up, so its agent
//! checks the group at once (and records the known replica counts a forced failover needs)
//! instead of on its next re-read; a failed send is a warning, never a failure.

use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::keys::GroupRef;
use failover_messages::store::RegisterOutcome;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, table};

/// What `register` did.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Registration {
    /// The group state was created.
    Registered,
    /// It existed already with the same active cluster; nothing changed.
    AlreadyRegistered,
}

/// The result of `failoverctl register`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResult {
    /// The group.
    pub group: GroupRef,
    /// The table it is registered in.
    pub table: String,
    /// Its active cluster.
    pub active_cluster: String,
    /// Its epoch (0 for a new registration).
    pub epoch: u64,
    /// Registered now, or already.
    pub outcome: Registration,
    /// What did not work but changed nothing (the wake-up of the active cluster).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Registers `group` with `active` as its active cluster.
pub async fn register(
    ctx: &Context,
    group: &GroupRef,
    active: &str,
) -> Result<RegisterResult, CommandError> {
    let queue = ctx.queues.inbox_queue_name(active);
    if !ctx.inbox_known(active, &queue).await? {
        return Err(CommandError::UnknownCluster {
            cluster: active.to_owned(),
            queue,
        });
    }
    let outcome = ctx
        .store()
        .register_group(group, active)
        .await
        .map_err(|e| CommandError::from_store(&ctx.table, e))?;
    let (state, outcome) = match outcome {
        RegisterOutcome::Registered(state) => (state, Registration::Registered),
        RegisterOutcome::AlreadyRegistered(state) => (state, Registration::AlreadyRegistered),
        RegisterOutcome::ActiveElsewhere {
            active: current, ..
        } => {
            return Err(CommandError::ActiveElsewhere {
                group: group.clone(),
                table: ctx.table.clone(),
                active: current,
                requested: active.to_owned(),
            });
        }
    };
    let mut warnings = Vec::new();
    let inbox = ctx.inbox(crate::failover::SENDER);
    let wake = Envelope::for_group(
        EnvelopeKind::GroupRegistered,
        &state.group,
        state.epoch,
        crate::failover::SENDER,
        jiff::Timestamp::now(),
    );
    if let Err(e) = inbox.send(&state.active_cluster, &wake).await {
        let text = crate::error::report(&e).trim_end().replace('\n', "; ");
        tracing::warn!(cluster = %state.active_cluster, group = %state.group, "wake-up failed: {text}");
        warnings.push(format!(
            "could not wake {} ({text}); its agent sees the group on its next re-read",
            state.active_cluster
        ));
    }
    Ok(RegisterResult {
        group: state.group,
        table: ctx.table.clone(),
        active_cluster: state.active_cluster,
        epoch: state.epoch,
        outcome,
        warnings,
    })
}

impl Render for RegisterResult {
    fn plain(&self) -> String {
        let mut out = match self.outcome {
            Registration::Registered => format!(
                "registered group {} in table {} with active cluster {} (epoch {})\n",
                self.group, self.table, self.active_cluster, self.epoch
            ),
            Registration::AlreadyRegistered => format!(
                "group {} is already registered in table {} with active cluster {} (epoch {}); nothing changed\n",
                self.group, self.table, self.active_cluster, self.epoch
            ),
        };
        for w in &self.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        out
    }

    fn table(&self) -> String {
        let outcome = match self.outcome {
            Registration::Registered => "registered",
            Registration::AlreadyRegistered => "already registered",
        };
        table(
            ["GROUP", "ACTIVE", "EPOCH", "RESULT"],
            &[[
                self.group.to_string(),
                self.active_cluster.clone(),
                self.epoch.to_string(),
                outcome.to_owned(),
            ]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn result(outcome: Registration) -> RegisterResult {
        RegisterResult {
            group: "shop/orders".parse().unwrap(),
            table: "failover".into(),
            active_cluster: "east".into(),
            epoch: 0,
            outcome,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn plain_says_whether_anything_changed() {
        assert_eq!(
            render(&result(Registration::Registered), OutputFormat::Plain),
            "registered group shop/orders in table failover with active cluster east (epoch 0)\n"
        );
        let again = render(
            &result(Registration::AlreadyRegistered),
            OutputFormat::Plain,
        );
        assert!(again.contains("already registered"), "{again}");
        assert!(again.contains("nothing changed"), "{again}");
    }

    #[test]
    fn plain_lists_warnings_under_the_result() {
        let mut r = result(Registration::Registered);
        r.warnings.push("could not wake east (no queue)".into());
        let out = render(&r, OutputFormat::Plain);
        assert!(
            out.ends_with("(epoch 0)\n  warning: could not wake east (no queue)\n"),
            "{out}"
        );
    }

    #[test]
    fn table_is_one_row() {
        assert_eq!(
            render(&result(Registration::Registered), OutputFormat::Table),
            "GROUP        ACTIVE  EPOCH  RESULT\nshop/orders  east    0      registered\n"
        );
    }

    #[test]
    fn json_and_yaml_carry_the_outcome() {
        let json: serde_json::Value = serde_json::from_str(&render(
            &result(Registration::AlreadyRegistered),
            OutputFormat::Json,
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "group": "shop/orders", "table": "failover", "activeCluster": "east",
                "epoch": 0, "outcome": "alreadyRegistered"
            })
        );
        assert_eq!(
            render(&result(Registration::Registered), OutputFormat::Yaml),
            "group: shop/orders\ntable: failover\nactiveCluster: east\nepoch: 0\noutcome: registered\n"
        );
    }
}
