//! What a front end reads before it asks [`decide_start`](crate::protocol::start::decide_start):
//! the group state and the heartbeats of its active cluster and of the target, all
//! consistent reads. `failoverctl failover`, `failoverctl plan` and the `Failover` trigger read
//! through here, so they decide on the same facts.

use jiff::Timestamp;

use super::{Store, StoreError};
use crate::keys::GroupRef;
use crate::protocol::start::{AgentSeen, Observed};
use crate::records::{GroupState, Heartbeat};

/// The facts a start is decided on, as read at [`StartView::read_at`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartView {
    /// The group state (`None`: not registered).
    pub state: Option<GroupState>,
    /// The heartbeat of the group's active cluster (`None`: none recorded, or unregistered).
    pub source: Option<Heartbeat>,
    /// The heartbeat of the target cluster.
    pub target: Option<Heartbeat>,
    /// The store's clock when the reads were made.
    pub read_at: Timestamp,
}

impl StartView {
    /// The view for [`decide_start`](crate::protocol::start::decide_start);
    /// `target_known`: whether the target's inbox queue exists (`None`: not checked).
    pub fn observed(&self, target_known: Option<bool>) -> Observed<'_> {
        Observed {
            state: self.state.as_ref(),
            target_known,
            source_agent: match &self.state {
                Some(_) => AgentSeen::read(self.source.as_ref()),
                None => AgentSeen::NotRead,
            },
            target_agent: AgentSeen::read(self.target.as_ref()),
        }
    }
}

impl Store {
    /// Reads what a start of `group` to `target` is decided on.
    pub async fn read_start_view(
        &self,
        group: &GroupRef,
        target: &str,
    ) -> Result<StartView, StoreError> {
        let state = self.get_group_state(group).await?;
        let source = match &state {
            Some(s) => self.get_heartbeat(&s.active_cluster).await?,
            None => None,
        };
        let target = self.get_heartbeat(target).await?;
        Ok(StartView {
            state,
            source: source.map(|h| h.heartbeat),
            target: target.map(|h| h.heartbeat),
            read_at: self.now(),
        })
    }
}
