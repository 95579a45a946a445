//! Where published runs go. A sink publishes a run whole or not at all.

pub mod https;
pub mod local;
pub mod remote;
pub mod s3;
