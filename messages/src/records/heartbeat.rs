//! The cluster heartbeat `CLUSTERS` / `CLUSTER#<name>`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, Item, Record, attr};
use crate::keys;

/// Cluster heartbeat `CLUSTERS` / `CLUSTER#<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Cluster name.
    pub cluster: String,
    /// Version of the agent that wrote it.
    pub agent_version: String,
    /// When it was written.
    pub last_seen: Timestamp,
    /// When it goes stale (whole seconds: the TTL attribute).
    pub expires_at: Timestamp,
}

impl Heartbeat {
    /// True when the heartbeat has expired at `now`. DynamoDB deletes expired items late
    /// (moto never does), so readers must check this.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}

impl Record for Heartbeat {
    const KIND: &'static str = "heartbeat";

    fn key(&self) -> (String, String) {
        keys::heartbeat_key(&self.cluster)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::AGENT_VERSION, &self.agent_version)
            .ms(attr::LAST_SEEN, self.last_seen)
            .n(attr::EXPIRES_AT, self.expires_at.as_second())
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            agent_version: r.opt_string(attr::AGENT_VERSION)?.unwrap_or_default(),
            last_seen: r.millis(attr::LAST_SEEN)?,
            expires_at: r.seconds(attr::EXPIRES_AT)?,
        })
    }
}
