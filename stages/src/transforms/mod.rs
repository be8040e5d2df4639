//! Transforms: one stage kind per file.

pub mod alert;
pub mod cross_rate;
pub mod enrich;
