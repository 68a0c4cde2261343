//! The cluster heartbeat `CLUSTERS` / `CLUSTER#<name>`: the agent's serving lease (see
//! [`crate::protocol::lease`]). Its `lastSeen` is the lease's version.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, Item, Problem, Record, attr};
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
    /// The lease duration the agent holds it for, in milliseconds (`None`: written by an
    /// older agent); see [`Heartbeat::lease_duration`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_ms: Option<u64>,
    /// Groups (`namespace/name`) this cluster keeps serving when it loses DynamoDB
    /// (`spec.onCoordinationLoss: KeepServing`); every other group it fences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_serving: Vec<String>,
    /// Groups armed for automatic failover in this cluster (a standby watching the active
    /// cluster's lease), stored as a string set of `<ns>/<name> watching` or
    /// `<ns>/<name> counting <acts-at>` ([`AutoArmed`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_armed: Vec<AutoArmed>,
}

/// A group armed for automatic failover in the cluster that wrote the heartbeat.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoArmed {
    /// The group, `namespace/name`.
    pub group: String,
    /// When this cluster acts unless the active cluster's lease is renewed (`None`: the
    /// lease is renewed as it should be; the cluster is watching).
    pub acts_at: Option<Timestamp>,
}

impl AutoArmed {
    /// The string-set entry.
    pub fn entry(&self) -> String {
        match self.acts_at {
            None => format!("{} watching", self.group),
            Some(t) => format!("{} counting {t}", self.group),
        }
    }

    /// Parses a string-set entry.
    pub fn parse(entry: &str) -> Option<Self> {
        let mut words = entry.split_whitespace();
        let group = words.next()?.to_owned();
        let acts_at = match (words.next()?, words.next()) {
            ("watching", None) => None,
            ("counting", Some(t)) => Some(t.parse().ok()?),
            _ => return None,
        };
        words.next().is_none().then_some(Self { group, acts_at })
    }
}

impl Heartbeat {
    /// True when the heartbeat has expired at `now`. DynamoDB deletes expired items late
    /// (moto never does), so readers must check this.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// The lease duration the agent holds this record for, when it says.
    pub fn lease_duration(&self) -> Option<Duration> {
        self.lease_duration_ms.map(Duration::from_millis)
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
            .opt_n(attr::LEASE_DURATION_MS, self.lease_duration_ms)
            .ss(attr::KEEP_SERVING, &self.keep_serving)
            .ss(
                attr::AUTO_ARMED,
                &self
                    .auto_armed
                    .iter()
                    .map(AutoArmed::entry)
                    .collect::<Vec<_>>(),
            )
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            agent_version: r.opt_string(attr::AGENT_VERSION)?.unwrap_or_default(),
            last_seen: r.millis(attr::LAST_SEEN)?,
            expires_at: r.seconds(attr::EXPIRES_AT)?,
            lease_duration_ms: r.opt_u64(attr::LEASE_DURATION_MS)?,
            keep_serving: r.opt_string_set(attr::KEEP_SERVING)?,
            auto_armed: r
                .opt_string_set(attr::AUTO_ARMED)?
                .iter()
                .map(|e| {
                    AutoArmed::parse(e).ok_or_else(|| {
                        r.err(
                            attr::AUTO_ARMED,
                            Problem::BadValue(format!(
                                "{e:?} is not `<group> watching` or `<group> counting <time>`"
                            )),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}
