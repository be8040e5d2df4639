//! fxflow-stages: FX rate monitoring on the fxflow engine.
//!
//! [`fx`] holds the domain (exact-decimal quotes, market-convention pairs,
//! triangulation, alert rules); [`sources`], [`transforms`] and [`sinks`] hold
//! the stage kinds, one file (or folder) each, by role; [`registry`] lists them
//! for pipeline files; [`cli`] is the `fxflow` command. What is not a stage
//! kind lives outside the role folders: [`backends`] (one module per database:
//! its resource kind and, for the history stores, its queries), [`store`] (the
//! history store's interface and the sink half its backends share), [`format`]
//! (text formats of the printing sinks).

pub mod backends;
pub mod backtest;
pub mod cli;
pub mod dlq;
pub mod format;
pub mod fx;
pub mod registry;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod transforms;

pub use registry::registry;
