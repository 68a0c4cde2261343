//! Records of the group partition `GROUP#<ns>/<name>`: the group state (owner, epoch,
//! operation in flight, lease, and the known replica counts it carries).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::{Problem, Reader, decode_replicas};
use super::encode::{Builder, replicas_to_av};
use super::{DecodeError, Item, Record, attr};
use crate::keys::{self, GroupRef};

/// The lease on a group while an operation runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Who renews it (a cluster name or the coordinator's identity).
    pub holder: String,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
}

/// Group state `GROUP#<ns>/<name>` / `STATE`: who owns the group and what runs on it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupState {
    /// The group.
    pub group: GroupRef,
    /// The cluster whose side is active.
    pub active_cluster: String,
    /// Grows by one with every operation started; every agent write is conditioned on it.
    pub epoch: u64,
    /// The operation in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    /// The cluster whose promotion was claimed and not yet completed. While it is set, only
    /// that cluster may have an active side, and only a forced operation may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_claimed_by: Option<String>,
    /// The lease of the operation in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// A suspended group refuses new operations.
    pub suspended: bool,
    /// Grows by one with every write of this record.
    pub version: u64,
    /// The last operation closed on this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op_id: Option<String>,
    /// When this record was last written.
    pub updated_at: Timestamp,
}

impl GroupState {
    /// The state of a group just registered with `active_cluster` active: epoch 0, nothing in
    /// flight, version 1.
    pub fn registered(group: GroupRef, active_cluster: &str, at: Timestamp) -> Self {
        Self {
            group,
            active_cluster: active_cluster.to_owned(),
            epoch: 0,
            op_id: None,
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: at,
        }
    }

    /// True when an operation is in flight and its lease has not expired at `now`.
    pub fn lease_is_live(&self, now: Timestamp) -> bool {
        self.op_id.is_some() && self.lease.as_ref().is_some_and(|l| l.expires_at >= now)
    }

    /// The one cluster entitled to an active side: the claimer of a promotion in flight,
    /// else the active cluster. Any other cluster whose side is active must fence itself.
    pub fn entitled_cluster(&self) -> &str {
        self.promotion_claimed_by
            .as_deref()
            .unwrap_or(&self.active_cluster)
    }

    /// True when `cluster` may have an active side ([`GroupState::entitled_cluster`]).
    pub fn is_entitled(&self, cluster: &str) -> bool {
        self.entitled_cluster() == cluster
    }
}
/// The replica counts of a group's Deployments and StatefulSets as last seen on its active
/// side, kept on the group state item (attribute `knownReplicas`, a map), written by the
/// active cluster's agent while no operation is in flight. A target that finds no count on
/// its operation (a forced failover whose source never ran) scales up to these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownReplicas {
    /// The group.
    pub group: GroupRef,
    /// The active cluster that saw them.
    pub cluster: String,
    /// The group's epoch when they were seen.
    pub epoch: u64,
    /// `<Kind>/<name>` → replicas (only counts above 0).
    pub replicas: BTreeMap<String, u32>,
    /// When they were written.
    pub updated_at: Timestamp,
}

impl KnownReplicas {
    const KIND: &'static str = "known replicas";

    /// The value of the group state's `knownReplicas` attribute.
    pub fn to_av(&self) -> AttributeValue {
        AttributeValue::M(
            Builder(Item::new())
                .s(attr::CLUSTER, &self.cluster)
                .n(attr::EPOCH, self.epoch)
                .raw(attr::ORIGINAL_REPLICAS, replicas_to_av(&self.replicas))
                .ms(attr::UPDATED_AT, self.updated_at)
                .0,
        )
    }

    /// The counts a group state item carries, if any.
    pub fn from_state_item(item: &Item) -> Result<Option<Self>, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        let group = r.group(attr::GROUP)?;
        let Some(m) = r.opt_map(attr::KNOWN_REPLICAS)? else {
            return Ok(None);
        };
        let r = r.nested(attr::KNOWN_REPLICAS, m);
        Ok(Some(Self {
            group,
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            epoch: r.u64(attr::EPOCH)?,
            replicas: decode_replicas(&r)?,
            updated_at: r.millis(attr::UPDATED_AT)?,
        }))
    }
}

impl Record for GroupState {
    const KIND: &'static str = "group state";

    fn key(&self) -> (String, String) {
        keys::group_state_key(&self.group)
    }

    fn to_item(&self) -> Item {
        let mut b = Builder::new(self.key())
            .s(attr::GSI1PK, keys::GSI1_GROUPS)
            .s(attr::GSI1SK, keys::group_gsi1sk(&self.group))
            .s(attr::GROUP, self.group.to_string())
            .s(attr::ACTIVE_CLUSTER, &self.active_cluster)
            .n(attr::EPOCH, self.epoch)
            .opt_s(attr::OP_ID, self.op_id.as_deref())
            .opt_s(
                attr::PROMOTION_CLAIMED_BY,
                self.promotion_claimed_by.as_deref(),
            )
            .bool(attr::SUSPENDED, self.suspended)
            .n(attr::VERSION, self.version)
            .opt_s(attr::LAST_OP_ID, self.last_op_id.as_deref())
            .ms(attr::UPDATED_AT, self.updated_at);
        if let Some(lease) = &self.lease {
            b = b
                .s(attr::LEASE_HOLDER, &lease.holder)
                .ms(attr::LEASE_EXPIRES_AT, lease.expires_at);
        }
        b.0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        let holder = r.opt_string(attr::LEASE_HOLDER)?;
        let expires = r.opt_millis(attr::LEASE_EXPIRES_AT)?;
        let lease = match (holder, expires) {
            (Some(holder), Some(expires_at)) => Some(Lease { holder, expires_at }),
            (None, None) => None,
            (Some(_), None) => return Err(r.err(attr::LEASE_EXPIRES_AT, Problem::Missing)),
            (None, Some(_)) => return Err(r.err(attr::LEASE_HOLDER, Problem::Missing)),
        };
        Ok(Self {
            group: r.group(attr::GROUP)?,
            active_cluster: r.checked(attr::ACTIVE_CLUSTER, keys::validate_cluster)?,
            epoch: r.u64(attr::EPOCH)?,
            op_id: r.opt_string(attr::OP_ID)?,
            promotion_claimed_by: match r.opt_s(attr::PROMOTION_CLAIMED_BY)? {
                Some(c) => {
                    keys::validate_cluster(c).map_err(|e| {
                        r.err(attr::PROMOTION_CLAIMED_BY, Problem::BadValue(e.to_string()))
                    })?;
                    Some(c.to_owned())
                }
                None => None,
            },
            lease,
            suspended: r.opt_bool(attr::SUSPENDED)?.unwrap_or(false),
            version: r.opt_u64(attr::VERSION)?.unwrap_or(0),
            last_op_id: r.opt_string(attr::LAST_OP_ID)?,
            updated_at: r.millis(attr::UPDATED_AT)?,
        })
    }
}
