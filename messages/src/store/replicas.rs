//! The group's known replica counts (attribute `knownReplicas` of the group state item, see
//! [`KnownReplicas`]): written by the active cluster's agent while nothing is in flight, read
//! by a target that has no count from its operation.

use std::collections::BTreeMap;

use super::{Cause, Outcome, Stale, Store, StoreError, values};
use crate::keys::{self, GroupRef};
use crate::records::{GroupState, KnownReplicas, Record, attr, av_n, av_s};

impl Store {
    /// Records `replicas` as the group's known counts, seen by `cluster` at `epoch`: one
    /// `UpdateItem` of the group state under `activeCluster = cluster AND epoch = e`, no
    /// operation in flight, no promotion claimed. Only the cluster entitled to the group,
    /// while idle, can write them.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch` (the group moved, or an operation is in flight).
    pub async fn record_known_replicas(
        &self,
        group: &GroupRef,
        cluster: &str,
        epoch: u64,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<Outcome<()>, StoreError> {
        self.record_known_replicas_inner(group, cluster, epoch, replicas)
            .await
            .map_err(|source| StoreError::RecordKnownReplicas {
                group: group.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn record_known_replicas_inner(
        &self,
        group: &GroupRef,
        cluster: &str,
        epoch: u64,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "record_known_replicas";
        keys::validate_cluster(cluster)?;
        let record = KnownReplicas {
            group: group.clone(),
            cluster: cluster.to_owned(),
            epoch,
            replicas: replicas.clone(),
            updated_at: self.now(),
        };
        let refused = self
            .update_if(
                OP,
                keys::group_state_key(group),
                "SET #knownReplicas = :k",
                "#activeCluster = :c AND #epoch = :e AND attribute_not_exists(#opId) \
                 AND attribute_not_exists(#promotionClaimedBy)",
                &[
                    attr::KNOWN_REPLICAS,
                    attr::ACTIVE_CLUSTER,
                    attr::EPOCH,
                    attr::OP_ID,
                    attr::PROMOTION_CLAIMED_BY,
                ],
                values([
                    (":k", record.to_av()),
                    (":c", av_s(cluster)),
                    (":e", av_n(epoch)),
                ]),
            )
            .await?;
        match refused {
            None => Ok(Outcome::Done(())),
            Some(old) => {
                let state = old.as_ref().map(GroupState::from_item).transpose()?;
                Ok(Outcome::StaleEpoch(Stale {
                    expected_epoch: epoch,
                    current_epoch: state.as_ref().map(|s| s.epoch),
                    current_op: state.and_then(|s| s.op_id),
                }))
            }
        }
    }

    /// The group's known replica counts, if any were recorded (consistent read).
    pub async fn get_known_replicas(
        &self,
        group: &GroupRef,
    ) -> Result<Option<KnownReplicas>, StoreError> {
        let wrap = |source: Cause| StoreError::GetKnownReplicas {
            group: group.clone(),
            table: self.table.to_string(),
            source,
        };
        match self
            .get_item("get_known_replicas", keys::group_state_key(group))
            .await
            .map_err(wrap)?
        {
            Some(item) => KnownReplicas::from_state_item(&item).map_err(|e| wrap(e.into())),
            None => Ok(None),
        }
    }
}
