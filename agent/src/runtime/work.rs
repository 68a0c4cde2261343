//! What work the operation runner has: which operations in flight involve this cluster,
//! what to run for each ([`run_kind`]), and the DynamoDB reads that find them: the re-read
//! timer's listing of every group ([`operations_in_flight`]) and a wake-up's read of the
//! groups it names ([`work_of_groups`]). The runner itself is in [`super::actors`].

use std::collections::HashSet;

use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, Operation, Phase};
use failover_messages::store::{Store, StoreError};
use futures::{StreamExt, TryStreamExt};

use crate::adapter::RunKind;
use crate::errors::error_chain;

/// True when `op` names `cluster` as its source or target and is not closed.
pub fn involves(op: &Operation, cluster: &str) -> bool {
    (op.source == cluster || op.target == cluster) && !op.phase.is_terminal()
}

/// What `cluster` must run for `op`, the operation `state` (its group's state) names:
///
/// * an abort was granted (requested, no promotion claimed): the cluster entitled to the
///   group (its active cluster) rolls back, whatever the operation's phase (a `Failed`
///   operation can be aborted); every other cluster runs nothing (its forward run stops at
///   its next check of the operation);
/// * otherwise, while the operation is open, its source and target run their side.
pub fn run_kind(op: &Operation, state: &GroupState, cluster: &str) -> Option<RunKind> {
    if op.abort_requested_at.is_some() {
        let granted = op.promotion_started_at.is_none() && state.promotion_claimed_by.is_none();
        let closed = matches!(
            op.phase,
            Phase::Aborted | Phase::Succeeded | Phase::RolledBack
        );
        return (granted && !closed && state.is_entitled(cluster)).then_some(RunKind::Rollback);
    }
    involves(op, cluster).then_some(RunKind::Forward)
}

/// One run to start: an operation and what to run for it.
#[derive(Clone, Debug)]
pub struct Work {
    /// The operation.
    pub op: Operation,
    /// What to run.
    pub kind: RunKind,
}

/// The work of `in_flight` to start now: its operation not running (whatever the kind: a
/// rollback waits until the forward run has stopped), not finished by this process.
pub fn to_start(
    in_flight: Vec<Work>,
    running: &HashSet<String>,
    finished: &HashSet<(String, RunKind)>,
) -> Vec<Work> {
    let mut seen = HashSet::new();
    in_flight
        .into_iter()
        .filter(|w| {
            !running.contains(&w.op.id)
                && !finished.contains(&(w.op.id.clone(), w.kind))
                && seen.insert(w.op.id.clone())
        })
        .collect()
}

/// Operations this process found closed after their group was released: not read again.
pub type Settled = std::sync::Arc<std::sync::Mutex<HashSet<String>>>;

/// The operation a group state leaves work for: the one in flight (`opId`), else the last
/// one (`lastOpId`, at the group's epoch) unless `settled` knows it closed; `released` tells
/// which.
pub(crate) fn pending_op(group: &GroupState, settled: &HashSet<String>) -> Option<(String, bool)> {
    match (&group.op_id, &group.last_op_id) {
        (Some(id), _) => Some((id.clone(), false)),
        (None, Some(id)) if !settled.contains(id) => Some((id.clone(), true)),
        _ => None,
    }
}

/// How many groups one listing reads at a time.
const LISTING_READS: usize = 8;

/// The work in flight for `cluster`: every group state with work pending ([`pending_op`];
/// listed through the eventually consistent index), except the groups whose listed
/// operation is in `running` (its run sees its own news), each read with [`work_of_group`].
/// A group already released whose last operation (`lastOpId`) is still open had its close
/// interrupted after the release (the history record and the operation's phase come after
/// it): that operation is run again too, and its sides' runs, their steps done, finish the
/// close. Each released group's last operation is read once per process (`settled`
/// remembers the closed ones). At most [`LISTING_READS`] groups are read at a time.
pub async fn operations_in_flight(
    store: &Store,
    cluster: &str,
    settled: &Settled,
    running: &HashSet<String>,
) -> Result<Vec<Work>, StoreError> {
    let known = || settled.lock().unwrap_or_else(|e| e.into_inner());
    let pending: Vec<(GroupRef, String)> = store
        .list_groups()
        .await?
        .into_iter()
        .filter_map(|listed| {
            let (op_id, _) = pending_op(&listed, &known())?;
            (!running.contains(&op_id)).then_some((listed.group, op_id))
        })
        .collect();
    let found: Vec<Option<Work>> = futures::stream::iter(pending)
        .map(|(group, op_id)| async move {
            work_of_group(store, cluster, &group, &op_id, settled).await
        })
        .buffered(LISTING_READS)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The work `group` leaves `cluster`: the operation its state names ([`pending_op`]), read
/// with the state in one consistent `BatchGetItem` when that operation is `op_id` (the
/// operation a wake-up or the listing named). When the state names another, that one is
/// read instead (one more read). A released group's last operation found closed goes into
/// `settled`.
pub async fn work_of_group(
    store: &Store,
    cluster: &str,
    group: &GroupRef,
    op_id: &str,
    settled: &Settled,
) -> Result<Option<Work>, StoreError> {
    let known = || settled.lock().unwrap_or_else(|e| e.into_inner());
    let mut wanted = op_id.to_owned();
    // The state may name another operation than the one asked for: read that one (once).
    for _ in 0..2 {
        let (op, state) = match store.get_operation_and_state_of(group, &wanted).await? {
            Some((op, Some(state))) => (Some(op), state),
            Some((_, None)) => return Ok(None),
            None => match store.get_group_state(group).await? {
                Some(state) => (None, state),
                None => return Ok(None),
            },
        };
        let Some((pending, released)) = pending_op(&state, &known()) else {
            return Ok(None);
        };
        if pending != wanted {
            wanted = pending;
            continue;
        }
        let Some(op) = op else {
            // The state names an operation whose item is not there (yet; for a released
            // group's last one, not any more: not looked at again).
            if released {
                known().insert(wanted);
            }
            return Ok(None);
        };
        if released {
            if !op.phase.is_terminal() && op.epoch == state.epoch {
                tracing::info!(op = %op.id, group = %state.group, phase = %op.phase, "the group was released but its operation is still open: finishing its close");
            } else {
                known().insert(wanted);
                return Ok(None);
            }
        }
        return Ok(run_kind(&op, &state, cluster).map(|kind| Work { op, kind }));
    }
    Ok(None)
}

/// [`work_of_group`] of each `(group, operation)` of `wanted`, one after another. One
/// group's failed read (a forged envelope naming another group's operation, a throttled
/// call) is logged and leaves the others' work to start; the re-read timer looks at that
/// group again.
pub async fn work_of_groups(
    store: &Store,
    cluster: &str,
    wanted: Vec<(GroupRef, String)>,
    settled: &Settled,
) -> Vec<Work> {
    let mut work = Vec::new();
    for (group, op_id) in wanted {
        match work_of_group(store, cluster, &group, &op_id, settled).await {
            Ok(found) => work.extend(found),
            Err(e) => tracing::warn!(
                group = %group, op = %op_id, error = %error_chain(&e),
                "reading the group a wake-up named failed; the next re-read looks again"
            ),
        }
    }
    work
}

/// The `(group, operation)` pairs of `named` not already running, each once.
pub fn unique_not_running(
    named: Vec<(GroupRef, String)>,
    running: &HashSet<String>,
) -> Vec<(GroupRef, String)> {
    let mut seen = HashSet::new();
    named
        .into_iter()
        .filter(|(g, op)| !running.contains(op) && seen.insert((g.clone(), op.clone())))
        .collect()
}
