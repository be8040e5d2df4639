//! Sources: one stage kind per file.

pub mod replay;
pub mod synthetic;
