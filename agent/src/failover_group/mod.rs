//! The `FailoverGroup` object (`failover.io/v1alpha1`) as this cluster's agent keeps it: its
//! status, and the fencing of this cluster's side when it is not entitled to it.
//!
//! | file | what |
//! |---|---|
//! | [`group_spec`] | spec validation, each problem naming its field (pure) |
//! | [`group_role`] | this cluster's role from the DynamoDB group state; the last operation's summary (pure) |
//! | [`group_resources`] | what the referenced objects look like in this cluster, and whether they are in the side the role wants |
//! | [`group_status`] | the status: computed (pure) and refreshed (reads, patch when it differs) |
//! | [`group_events`] | the Kubernetes Events: invalid spec, fenced (pure) |
//! | [`fencing`] | self-fencing: the entitlement check per occasion (pure), observing a side, fencing it |
//! | [`auto_failover`] | automatic failover: armed, counting or firing, cooldown and target order (pure) |
//!
//! Inside, the files import downward only: `group_spec`, `group_role`, `group_resources` ←
//! `group_status`; `group_spec` ← `group_events` ← `fencing`.

pub mod auto_failover;
pub mod fencing;
pub mod group_events;
pub mod group_resources;
pub mod group_role;
pub mod group_spec;
pub mod group_status;
