//! Lease renewal: an agent keeps its operation's lease alive on the group state.

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use jiff::SignedDuration;

use crate::keys;
use crate::records::{Lease, attr, av_ms, av_n, av_s};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, calls, key_map, names, values};

impl Store {
    /// Renews the lease (condition `opId = id AND epoch = e`).
    ///
    /// Outcomes: `Done(lease)`; `StaleEpoch`.
    pub async fn renew_lease(
        &self,
        op: &OpRef,
        holder: &str,
        ttl: Duration,
    ) -> Result<Outcome<Lease>, StoreError> {
        self.renew_lease_inner(op, holder, ttl)
            .await
            .map_err(|source| StoreError::RenewLease {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn renew_lease_inner(
        &self,
        op: &OpRef,
        holder: &str,
        ttl: Duration,
    ) -> Result<Outcome<Lease>, Cause> {
        if holder.is_empty() {
            return Err(Cause::Invalid("the lease holder is empty".into()));
        }
        let now = self.now();
        let expires_at = SignedDuration::try_from(ttl)
            .ok()
            .filter(|d| d.is_positive())
            .and_then(|d| now.checked_add(d).ok())
            .ok_or_else(|| Cause::Invalid(format!("lease TTL {ttl:?} is not usable")))?;
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::group_state_key(&op.group))))
            .update_expression(
                "SET #leaseHolder = :h, #leaseExpiresAt = :exp, \
                 #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now",
            )
            .condition_expression("#epoch = :e AND #opId = :id")
            .set_expression_attribute_names(Some(names(&[
                attr::LEASE_HOLDER,
                attr::LEASE_EXPIRES_AT,
                attr::VERSION,
                attr::UPDATED_AT,
                attr::EPOCH,
                attr::OP_ID,
            ])))
            .set_expression_attribute_values(Some(values([
                (":h", av_s(holder)),
                (":exp", av_ms(expires_at)),
                (":zero", av_n(0)),
                (":one", av_n(1)),
                (":now", av_ms(now)),
                (":e", av_n(op.epoch)),
                (":id", av_s(&op.id)),
            ])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self
            .send("renew_lease", "UpdateItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => Ok(Outcome::Done(Lease {
                holder: holder.to_owned(),
                expires_at,
            })),
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    let old = e.item().cloned();
                    Ok(Outcome::StaleEpoch(
                        self.stale("renew_lease", op, old.as_ref()).await?,
                    ))
                }
                _ => Err(f.into_cause()),
            },
        }
    }
}
