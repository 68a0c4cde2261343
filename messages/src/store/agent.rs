//! Agent-side writes, each conditioned on the group state (protocol rule 2): lease
//! renewal, journal, READY_FOR_PROMOTION, promotion claim, PROMOTED, completion, abort
//! closing, dual-active marks and phases.
//!
//! Every write for operation (`e`, `id`) is either an update of the group state under the
//! condition `epoch = e AND opId = id` (lease renewal, claim, completion, abort closing), or
//! one `TransactWriteItems` whose first item is a `ConditionCheck` on the group state with
//! that condition. So once the operation is closed or superseded, every later write of its
//! agents is refused as [`Outcome::StaleEpoch`].
//!
//! This module holds the transaction-item builders and checks the writes share; the writes
//! themselves are grouped by protocol step in its submodules (`lease`, `journal`,
//! `handoff`, `operation`, `close`).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

use super::calls::classify_error;
use super::coordinator::{ms_attr, s_attr};
use super::error::Cause;
use super::outcome::{OpRef, Outcome};
use super::{MAX_TRANSACTION_ITEMS, Store, key_map, names};
use crate::keys;
use crate::records::{Item, Phase, attr};

mod close;
mod handoff;
mod journal;
mod lease;
mod operation;

fn opt_values(v: HashMap<String, AttributeValue>) -> Option<HashMap<String, AttributeValue>> {
    if v.is_empty() { None } else { Some(v) }
}

impl Store {
    pub(super) fn tx_update(
        &self,
        key: (String, String),
        update: &str,
        condition: Option<&str>,
        attr_names: &[&str],
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, Cause> {
        let u = Update::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(Some(names(attr_names)))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    pub(super) fn tx_check(
        &self,
        key: (String, String),
        condition: &str,
        attr_names: &[&str],
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, Cause> {
        let c = ConditionCheck::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(attr_names)))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        Ok(TransactWriteItem::builder().condition_check(c).build())
    }

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
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(attr_names)))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self
            .send(operation, "UpdateItem", classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => Ok(None),
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    Ok(Some(e.item().cloned()))
                }
                _ => Err(f.into_cause()),
            },
        }
    }

    pub(super) fn tx_put_new(&self, item: Item) -> Result<TransactWriteItem, Cause> {
        let p = Put::builder()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#PK)")
            .set_expression_attribute_names(Some(names(&[attr::PK])))
            .build()?;
        Ok(TransactWriteItem::builder().put(p).build())
    }

    /// Classifies a lost condition on the operation item (`OperationNotFound`,
    /// `AbortRequested`, `PromotionClaimed`, `AlreadyFinished`, `NotClaimed`), reading it
    /// when the cancellation carried no item. `None` when none of these applies.
    async fn op_conflict<T>(
        &self,
        operation: &'static str,
        op: &OpRef,
        old: Option<&Item>,
        expect_claimed: bool,
    ) -> Result<Outcome<T>, Cause> {
        let item = self
            .item_or_read(operation, old, keys::operation_key(&op.id))
            .await?;
        let Some(item) = item.as_deref() else {
            return Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            });
        };
        if let Some(at) = ms_attr(item, attr::ABORT_REQUESTED_AT) {
            return Ok(Outcome::AbortRequested { at });
        }
        if let Some(phase) = s_attr(item, attr::PHASE).and_then(|p| p.parse::<Phase>().ok())
            && phase.is_terminal()
        {
            return Ok(Outcome::AlreadyFinished { phase });
        }
        match ms_attr(item, attr::PROMOTION_STARTED_AT) {
            Some(at) if !expect_claimed => Ok(Outcome::PromotionClaimed {
                at: Some(at),
                by: None,
            }),
            None if expect_claimed => Ok(Outcome::NotClaimed),
            _ => Ok(Outcome::StaleEpoch(self.stale(operation, op, None).await?)),
        }
    }
}

/// Volumes for one transaction: valid names, no duplicates, within the item limit
/// (`extra` items of the transaction are not volumes).
fn check_volumes(volumes: &[String], extra: usize) -> Result<(), Cause> {
    if volumes.is_empty() {
        return Err(Cause::Invalid("no volumes given".into()));
    }
    if volumes.len() + extra > MAX_TRANSACTION_ITEMS {
        return Err(Cause::Invalid(format!(
            "{} volumes do not fit in one transaction (at most {})",
            volumes.len(),
            MAX_TRANSACTION_ITEMS - extra
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
