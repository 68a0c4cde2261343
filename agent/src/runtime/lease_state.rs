//! This process's view of its serving lease ([`LeaseHandle`]), shared by the lease actor
//! ([`super::lease`]) and the fencer ([`super::fencer`]): the lease itself, the groups its
//! last successful renewal published as `KeepServing`, and the groups registered in this
//! agent's table as last read (a lost lease fences only those).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use failover_messages::protocol::lease::{HeldLease, Holding, LeaseTerms};
use failover_messages::records::AutoArmed;

/// This process's view of its lease, shared by the lease actor and the fencer: the lease,
/// the groups its last successful renewal said keep serving, and the groups registered in
/// this agent's table as last read.
#[derive(Clone, Debug)]
pub struct LeaseHandle(Arc<Mutex<Held>>);

#[derive(Debug)]
struct Held {
    lease: HeldLease,
    published: Vec<String>,
    registered: Option<BTreeSet<String>>,
    auto_armed: Vec<AutoArmed>,
}

impl LeaseHandle {
    /// A lease with `terms`, not yet held.
    pub fn new(terms: LeaseTerms) -> Self {
        Self(Arc::new(Mutex::new(Held {
            lease: HeldLease::new(terms),
            published: Vec::new(),
            registered: None,
            auto_armed: Vec::new(),
        })))
    }

    /// The terms.
    pub fn terms(&self) -> LeaseTerms {
        self.0.lock().unwrap().lease.terms()
    }

    /// A renewal sent at `sent`, publishing `keep_serving`, succeeded.
    pub fn renewed(&self, sent: Instant, keep_serving: Vec<String>) {
        let mut held = self.0.lock().unwrap();
        held.lease.renewed(sent);
        held.published = keep_serving;
    }

    /// Where the lease stands now.
    pub fn holding(&self) -> Holding {
        self.0.lock().unwrap().lease.holding(Instant::now())
    }

    /// True when the last published renewal said `group` keeps serving without DynamoDB:
    /// only then may this agent keep it serving after its lease ran out (observers relied on
    /// what was published).
    pub fn published_keep_serving(&self, group: &str) -> bool {
        self.0.lock().unwrap().published.iter().any(|g| g == group)
    }

    /// The groups armed for automatic failover here, which the next renewal publishes (the
    /// automatic failover actor sets them after each of its ticks).
    pub fn set_auto_armed(&self, armed: Vec<AutoArmed>) {
        self.0.lock().unwrap().auto_armed = armed;
    }

    /// The groups armed for automatic failover here, as last set.
    pub fn auto_armed(&self) -> Vec<AutoArmed> {
        self.0.lock().unwrap().auto_armed.clone()
    }

    /// The groups (`namespace/name`) registered in this agent's table, as last read.
    pub fn set_registered(&self, groups: BTreeSet<String>) {
        self.0.lock().unwrap().registered = Some(groups);
    }

    /// Adds `group` to the registered groups, as last read: an operation of it runs here, so
    /// it is in this agent's table even when the last full read predates its registration (a
    /// standby registered before, now the active side, must fence it on a lost lease before
    /// the next read). Before any read succeeded the status rule of [`LeaseHandle::owns`]
    /// still applies.
    pub fn note_registered(&self, group: &str) {
        if let Some(registered) = &mut self.0.lock().unwrap().registered {
            registered.insert(group.to_owned());
        }
    }

    /// True when `group` is this agent's to fence: registered in its table as last read, or,
    /// before any read succeeded, when its status shows an agent recorded its state
    /// (`status_has_state`). A FailoverGroup no table of this agent knows is left alone.
    pub fn owns(&self, group: &str, status_has_state: bool) -> bool {
        match &self.0.lock().unwrap().registered {
            Some(registered) => registered.contains(group),
            None => status_has_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_groups_are_this_agents_to_fence() {
        let lease = LeaseHandle::new(LeaseTerms::default());
        // Before any read: what the status shows.
        assert!(lease.owns("shop/orders", true));
        assert!(!lease.owns("other/team", false));
        lease.set_registered(["shop/orders".to_owned()].into());
        assert!(lease.owns("shop/orders", false));
        assert!(!lease.owns("other/team", true));
        // An operation of a group registered after that read makes it this agent's.
        assert!(!lease.owns("shop/cart", true));
        lease.note_registered("shop/cart");
        assert!(lease.owns("shop/cart", false));
    }

    #[test]
    fn noting_a_group_before_any_read_leaves_the_status_rule() {
        let lease = LeaseHandle::new(LeaseTerms::default());
        lease.note_registered("shop/orders");
        assert!(lease.owns("other/team", true));
        assert!(!lease.owns("shop/orders", false));
    }
}
