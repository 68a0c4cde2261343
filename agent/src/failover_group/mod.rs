//! The `FailoverGroup` object.

pub mod fencing;
pub mod group_events;
pub mod group_resources;
pub mod group_role;
pub mod group_spec;
pub mod group_status;
