//! What crosses cluster boundaries.
pub mod crd;
pub mod envelope;
pub mod inbox;
