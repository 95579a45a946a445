//! airlock: runs sandboxed WebAssembly connector plugins that extract metadata, filters what
//! they emit, and publishes the result whole or not at all.
//!
//! The CLI (`src/cli`) only parses arguments and calls into this library, so every command is
//! also a function a test can call.

pub mod capabilities;
pub mod cli;
pub mod config;
pub mod demo;
pub mod formats;
pub mod home;
pub mod pipeline;
pub mod plugins;
pub mod run;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod sinks;
pub mod state;
pub mod tls;
pub mod validate;
