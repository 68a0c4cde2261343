//! Agent-side writes: lease renewal, journal, READY_FOR_PROMOTION, promotion claim,
//! PROMOTED, completion, abort closing, failure, dual-active marks and phases.
//!
//! Every write for operation (`e`, `id`) that carries authority is one `UpdateItem` of the
//! group state under `epoch = e AND opId = id` ([`Store::update_group_for_op`]), which
//! also carries the step's own conditions (no abort, the claim made, …) because the
//! operation's handoff lives on that item. So once the operation is closed or superseded,
//! every later write of its agents is refused as [`Outcome::StaleEpoch`], and no write needs
//! a transaction. The operation item's own attributes (phase, original replicas,
//! dual-active marks) and the journal carry no authority and are written on their own.
//!
//! This module holds the single-item write helpers and checks the writes share; the writes
//! themselves are grouped by protocol step in its submodules (`lease`, `journal`,
//! `handoff`, `operation`, `failure`, `close`).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::calls::classify_error;
use super::coordinator::s_attr;
use super::error::Cause;
use super::outcome::OpRef;
use super::{MAX_VOLUMES, Store, key_map, names};
use crate::keys;
use crate::records::{Item, attr};

mod close;
mod failure;
mod handoff;
mod journal;
mod lease;

pub use self::journal::CarriedStages;
pub(crate) use self::journal::StageSets;
mod operation;

/// What became of a write of the group state for an operation
/// ([`Store::update_group_for_op`]).
pub(super) enum GroupWrite {
    /// Written: the item as it is now.
    Done(Item),
    /// The group is no longer at the operation's epoch with it in flight.
    Stale(super::outcome::Stale),
    /// The operation is current; another part of the condition failed: the item as it stood.
    Refused(Item),
}

fn opt_values(v: HashMap<String, AttributeValue>) -> Option<HashMap<String, AttributeValue>> {
    if v.is_empty() { None } else { Some(v) }
}

impl Store {
    /// One conditional `UpdateItem` on one item: `Ok(None)` when it was applied, `Ok(Some(old))`
    /// when the condition failed (`old` is the item as it stood, absent when there was none).
    pub(super) async fn update_if(
        &self,
        operation: &'static str,
        key: (String, String),
        update: &str,
        condition: &str,
        attr_names: &[&str],
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<Option<Option<Item>>, Cause> {
        Ok(self
            .update_if_named(
                operation,
                key,
                update,
                condition,
                attr_names,
                HashMap::new(),
                attr_values,
            )
            .await?
            .err())
    }

    /// [`Store::update_if`] with more name placeholders (`#v0` → a volume name, …):
    /// `Ok(Ok(new))` with the item as written, `Ok(Err(old))` when the condition failed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn update_if_named(
        &self,
        operation: &'static str,
        key: (String, String),
        update: &str,
        condition: &str,
        attr_names: &[&str],
        placeholders: HashMap<String, String>,
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<Result<Item, Option<Item>>, Cause> {
        let mut all_names = names(attr_names);
        all_names.extend(placeholders);
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(all_names))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self
            .send(operation, "UpdateItem", classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(out) => Ok(Ok(out.attributes.unwrap_or_default())),
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    Ok(Err(e.item().cloned()))
                }
                _ => Err(f.into_cause()),
            },
        }
    }

    /// One `UpdateItem` of `op`'s group state under `epoch = e AND opId = id AND (extra)`
    /// (`#epoch`, `#opId`, `:e`, `:id` are defined; `placeholders` adds name placeholders
    /// that are not attribute constants, such as volume names). Refused
    /// with the group elsewhere: [`GroupWrite::Stale`]; refused on `extra`: the item as it
    /// stood, for the caller to classify. `version` grows and `updatedAt` is set by every
    /// such write.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn update_group_for_op(
        &self,
        operation: &'static str,
        op: &OpRef,
        update: &str,
        extra: &str,
        attr_names: &[&str],
        placeholders: HashMap<String, String>,
        mut attr_values: HashMap<String, AttributeValue>,
    ) -> Result<GroupWrite, Cause> {
        let condition = format!("#epoch = :e AND #opId = :id AND ({extra})");
        let rest = update.strip_prefix("SET ").ok_or_else(|| {
            Cause::Invalid(format!(
                "a group state update must begin with SET: {update}"
            ))
        })?;
        let update = format!(
            "SET #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now, {rest}"
        );
        let mut all_names = attr_names.to_vec();
        all_names.extend([attr::EPOCH, attr::OP_ID, attr::VERSION, attr::UPDATED_AT]);
        all_names.sort_unstable();
        all_names.dedup();
        attr_values.insert(":e".into(), AttributeValue::N(op.epoch.to_string()));
        attr_values.insert(":id".into(), AttributeValue::S(op.id.clone()));
        attr_values.insert(":zero".into(), AttributeValue::N("0".into()));
        attr_values.insert(":one".into(), AttributeValue::N("1".into()));
        attr_values
            .entry(":now".into())
            .or_insert_with(|| crate::records::av_ms(self.now()));
        let refused = self
            .update_if_named(
                operation,
                keys::group_state_key(&op.group),
                &update,
                &condition,
                &all_names,
                placeholders,
                attr_values,
            )
            .await?;
        let old = match refused {
            Ok(new) => return Ok(GroupWrite::Done(new)),
            Err(old) => old,
        };
        let current = old.as_ref().is_some_and(|item| {
            s_attr(item, attr::OP_ID) == Some(op.id.as_str())
                && matches!(item.get(attr::EPOCH), Some(AttributeValue::N(n)) if n.parse() == Ok(op.epoch))
        });
        match old {
            Some(item) if current => Ok(GroupWrite::Refused(item)),
            old => Ok(GroupWrite::Stale(
                self.stale(operation, op, old.as_ref()).await?,
            )),
        }
    }

    /// Puts `item` unless an item with its key exists (then leaves that one alone).
    pub(super) async fn put_new(&self, operation: &'static str, item: Item) -> Result<(), Cause> {
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#PK)")
            .set_expression_attribute_names(Some(names(&[attr::PK])));
        match self
            .send(operation, "PutItem", classify_error, || req.clone().send())
            .await
        {
            Ok(_) => Ok(()),
            Err(f) => match f.err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(f.into_cause()),
            },
        }
    }
}

/// The volumes one write names: at least one, valid names, no duplicates, at most
/// [`MAX_VOLUMES`] (the claim's condition names each).
fn check_volumes(volumes: &[String]) -> Result<(), Cause> {
    if volumes.is_empty() {
        return Err(Cause::Invalid("no volumes given".into()));
    }
    if volumes.len() > MAX_VOLUMES {
        return Err(Cause::Invalid(format!(
            "{} volumes in one group: at most {MAX_VOLUMES} fit in one write's condition",
            volumes.len(),
        )));
    }
    let mut seen = HashSet::new();
    for v in volumes {
        keys::validate_volume(v)?;
        if !seen.insert(v.as_str()) {
            return Err(Cause::Invalid(format!("volume {v} is named twice")));
        }
    }
    Ok(())
}

fn check_step(cluster: &str, stage: &str, task: &str) -> Result<(), Cause> {
    keys::validate_cluster(cluster)?;
    keys::validate_step_name("stage", stage)?;
    keys::validate_step_name("task", task)?;
    Ok(())
}

#[cfg(test)]
mod tests;
