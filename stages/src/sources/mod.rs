//! Sources: one stage kind per file or folder (`api/`, `http_poll/`).

pub mod api;
pub mod http_poll;
pub mod replay;
pub mod synthetic;
