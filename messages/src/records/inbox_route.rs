//! Where a cluster receives: `CLUSTERS` / `INBOX#<name>`, written by `failoverctl setup`.
//! A sender (the other cluster's agent, `failoverctl`) sends to this queue URL through an SQS
//! client for this region (and endpoint, when one is recorded), so each cluster's inbox can
//! live in its own region while the table is global.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, Item, Record, attr};
use crate::keys;

/// Inbox route `CLUSTERS` / `INBOX#<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InboxRoute {
    /// Cluster name.
    pub cluster: String,
    /// The URL of its inbox queue.
    pub queue_url: String,
    /// The AWS region of the queue (`None`: the sender's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An SQS endpoint URL to reach the queue through (`None`: the region's, or the
    /// sender's own override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// When it was written.
    pub updated_at: Timestamp,
}

impl Record for InboxRoute {
    const KIND: &'static str = "inbox route";

    fn key(&self) -> (String, String) {
        keys::inbox_route_key(&self.cluster)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::QUEUE_URL, &self.queue_url)
            .opt_s(attr::REGION, self.region.as_deref())
            .opt_s(attr::ENDPOINT, self.endpoint.as_deref())
            .ms(attr::UPDATED_AT, self.updated_at)
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            queue_url: r.s(attr::QUEUE_URL)?.to_owned(),
            region: r.opt_string(attr::REGION)?,
            endpoint: r.opt_string(attr::ENDPOINT)?,
            updated_at: r.millis(attr::UPDATED_AT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_round_trips_under_the_clusters_partition() {
        let route = InboxRoute {
            cluster: "east".into(),
            queue_url: "https://sqs.us-east-1.amazonaws.com/1/failover-east".into(),
            region: Some("us-east-1".into()),
            endpoint: None,
            updated_at: Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
        };
        assert_eq!(route.key(), ("CLUSTERS".into(), "INBOX#east".into()));
        assert_eq!(InboxRoute::from_item(&route.to_item()).unwrap(), route);
    }
}
