//! The `FailoverGroup` object.

pub mod fencing;
pub mod group_status;
