//! What crosses cluster boundaries.
pub mod crd;
pub mod envelope;
pub mod failpoint;
pub mod inbox;
pub mod keys;
pub mod protocol;
pub mod records;
pub mod setup;
pub mod store;
