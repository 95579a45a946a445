//! Where published runs go. A sink publishes a run whole or not at all.

pub mod local;
pub mod s3;
