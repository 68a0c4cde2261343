//! Reading an operation with its handoff: the operation item, and the group state that
//! carries the handoff while the operation is in flight (one `BatchGetItem` when the group
//! is known), overlaid so every reader sees the same phase, claim and abort.

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::coordinator::s_attr;
use super::error::Cause;
use super::{Store, calls, key_map};
use crate::keys::{self, GroupRef};
use crate::records::{GroupState, HandoffView, Item, Operation, Phase, Record, attr};

impl Store {
    /// A consistent read of a group state, decoded.
    pub(super) async fn read_state(
        &self,
        operation: &'static str,
        group: &GroupRef,
    ) -> Result<Option<GroupState>, Cause> {
        match self
            .get_item(operation, keys::group_state_key(group))
            .await?
        {
            Some(item) => Ok(Some(GroupState::from_item(&item)?)),
            None => Ok(None),
        }
    }

    /// A consistent read of an operation, decoded, with the handoff attributes the group
    /// state carries while it is in flight ([`Store::handoff_view`]): its abort, claim and
    /// group handoff times.
    pub(super) async fn read_operation(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        Ok(self
            .handoff_view(operation, op_id)
            .await?
            .map(|(mut op, view)| {
                overlay(&mut op, &view);
                op
            }))
    }

    /// An operation (consistent read) and its handoff: from the group state while that
    /// carries it (`opId`, or `lastOpId` before the close copied it, at the operation's
    /// epoch), else from the operation item (the copy a close left; empty for an operation
    /// superseded before it handed off). An operation the group state cannot carry (closed
    /// and copied) costs one read; else two.
    pub(super) async fn handoff_view(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<(Operation, HandoffView)>, Cause> {
        let Some(item) = self.get_item(operation, keys::operation_key(op_id)).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        let copied = op.phase.is_terminal() && op.phase != Phase::Failed;
        let state = if copied {
            None
        } else {
            self.get_item(operation, keys::group_state_key(&op.group))
                .await?
        };
        Ok(Some(handoff_of(op, &item, state.as_ref())?))
    }

    /// The operation item and the group state of `group` in one consistent `BatchGetItem`
    /// (one call instead of two; two reads when it was throttled in part). `None` when the
    /// operation item does not exist.
    async fn op_and_state_items(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Item, Option<Item>)>, Cause> {
        let op_key = keys::operation_key(op_id);
        let state_key = keys::group_state_key(group);
        let keys_and_attrs = KeysAndAttributes::builder()
            .keys(key_map(op_key.clone()))
            .keys(key_map(state_key.clone()))
            .consistent_read(true)
            .build()?;
        let req = self
            .client
            .batch_get_item()
            .request_items(self.table.to_string(), keys_and_attrs);
        let out = self
            .send(operation, "BatchGetItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
            .map_err(super::Failed::into_cause)?;
        let unprocessed = out
            .unprocessed_keys
            .as_ref()
            .is_some_and(|u| u.values().any(|k| !k.keys.is_empty()));
        if unprocessed {
            // Throttled in part: the two reads one by one.
            let Some(item) = self.get_item(operation, op_key).await? else {
                return Ok(None);
            };
            let state = self.get_item(operation, state_key).await?;
            return Ok(Some((item, state)));
        }
        let mut items = out
            .responses
            .and_then(|mut r| r.remove(self.table.as_ref()))
            .unwrap_or_default();
        let is = |item: &Item, (pk, sk): &(String, String)| {
            s_attr(item, keys::PK) == Some(pk.as_str())
                && s_attr(item, keys::SK) == Some(sk.as_str())
        };
        let Some(at) = items.iter().position(|i| is(i, &op_key)) else {
            return Ok(None);
        };
        let item = items.swap_remove(at);
        let state = items.into_iter().find(|i| is(i, &state_key));
        Ok(Some((item, state)))
    }

    /// [`Store::handoff_view`] for an operation of a known `group`, in one call
    /// ([`Store::op_and_state_items`]).
    pub(super) async fn handoff_view_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Operation, HandoffView)>, Cause> {
        let Some((item, state)) = self.op_and_state_items(operation, group, op_id).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        if op.group != *group {
            return self.handoff_view(operation, op_id).await;
        }
        handoff_of(op, &item, state.as_ref()).map(Some)
    }

    /// [`Store::read_operation`] for an operation of `group`, with the group state read in
    /// the same call ([`Store::op_and_state_items`]); the state is `None` when the group
    /// has none.
    pub(super) async fn read_operation_and_state_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Operation, Option<GroupState>)>, Cause> {
        let Some((item, state)) = self.op_and_state_items(operation, group, op_id).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        if op.group != *group {
            return Err(Cause::Invalid(format!(
                "operation {op_id} is of group {}, not of {group}",
                op.group
            )));
        }
        let (mut op, view) = handoff_of(op, &item, state.as_ref())?;
        overlay(&mut op, &view);
        let state = state.map(|s| GroupState::from_item(&s)).transpose()?;
        Ok(Some((op, state)))
    }

    /// [`Store::read_operation`] for an operation of a known `group`, in one call
    /// ([`Store::handoff_view_of`]).
    pub(super) async fn read_operation_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        Ok(self
            .handoff_view_of(operation, group, op_id)
            .await?
            .map(|(mut op, view)| {
                overlay(&mut op, &view);
                op
            }))
    }
}

/// The handoff of `op` (its item `item`) from the group state `state` when that carries it
/// (`opId`, or `lastOpId` before the close copied it, at the operation's epoch), else from
/// the operation item.
fn handoff_of(
    op: Operation,
    item: &Item,
    state: Option<&Item>,
) -> Result<(Operation, HandoffView), Cause> {
    let copied = op.phase.is_terminal() && op.phase != Phase::Failed;
    if !copied && let Some(state) = state {
        let carries = |a: &str| s_attr(state, a) == Some(op.id.as_str());
        let at_epoch = matches!(
            state.get(attr::EPOCH),
            Some(AttributeValue::N(n)) if n.parse() == Ok(op.epoch)
        );
        if at_epoch && (carries(attr::OP_ID) || carries(attr::LAST_OP_ID)) {
            let view = HandoffView::from_item(GroupState::KIND, state)?;
            return Ok((op, view));
        }
    }
    let view = HandoffView::from_item(Operation::KIND, item)?;
    Ok((op, view))
}

/// `op` with the handoff times of `view` (abort, claim), and `Failed` when the group state
/// carries its failure mark while its item still reads open (the mark decides; the item's
/// phase is its copy, written next, and an abort requested after the mark goes on as an
/// abort).
fn overlay(op: &mut Operation, view: &HandoffView) {
    op.abort_requested_at = view.abort_requested_at;
    op.promotion_started_at = view.promotion_started_at;
    if let Some(failure) = &view.failure
        && view.abort_requested_at.is_none()
        && matches!(op.phase, Phase::Pending | Phase::Running)
    {
        op.phase = Phase::Failed;
        op.finished_at = Some(failure.at);
        if failure.message.is_some() {
            op.message.clone_from(&failure.message);
        }
    }
}
