//! The handoff record `OP#<id>` / `VOL#<volume>`: one volume's way from source to target.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, HandoffState, Item, Record, attr};
use crate::keys;

/// Handoff record `OP#<id>` / `VOL#<volume>`: one volume's way from source to target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// Operation id.
    pub op_id: String,
    /// VolumeReplication name.
    pub volume: String,
    /// READY_FOR_PROMOTION or PROMOTED.
    pub state: HandoffState,
    /// Epoch the record was written at.
    pub epoch: u64,
    /// Cluster that wrote READY_FOR_PROMOTION (the target for a forced promotion).
    pub writer: String,
    /// When the source marked it ready (absent for a forced promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// When the target marked it promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Timestamp>,
}

impl Record for Handoff {
    const KIND: &'static str = "handoff";

    fn key(&self) -> (String, String) {
        keys::handoff_key(&self.op_id, &self.volume)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::OP_ID, &self.op_id)
            .s(attr::VOLUME, &self.volume)
            .s(attr::STATE, self.state.as_str())
            .n(attr::EPOCH, self.epoch)
            .s(attr::WRITER, &self.writer)
            .opt_ms(attr::READY_AT, self.ready_at)
            .opt_ms(attr::PROMOTED_AT, self.promoted_at)
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            op_id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
            volume: r.checked(attr::VOLUME, keys::validate_volume)?,
            state: r.parsed(attr::STATE)?,
            epoch: r.u64(attr::EPOCH)?,
            writer: r.checked(attr::WRITER, keys::validate_cluster)?,
            ready_at: r.opt_millis(attr::READY_AT)?,
            promoted_at: r.opt_millis(attr::PROMOTED_AT)?,
        })
    }
}
