//! Sources: one stage kind per file.

pub mod http_poll;
pub mod replay;
pub mod synthetic;
