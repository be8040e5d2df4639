//! fxflow-stages: FX rate monitoring on the fxflow engine.
//!
//! [`fx`] holds the domain (exact-decimal quotes, market-convention pairs,
//! triangulation, alert rules); [`sources`], [`transforms`] and [`sinks`] hold
//! one stage kind per file; [`registry`] lists them for pipeline files; [`cli`]
//! is the `fxflow` command.

pub mod api;
pub mod cli;
pub mod fx;
pub mod registry;
pub mod resources;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod transforms;

pub use registry::registry;
