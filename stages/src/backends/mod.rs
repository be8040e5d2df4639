//! Backends: one module per external system — its resource kind (a named
//! connection shared by stages: `resources: { "cache": Redis(...) }`) and,
//! for PostgreSQL and SQLite, the history store's queries (`store.rs`). The
//! sinks that write to them live in `sinks/`.

pub mod elasticsearch;
pub mod postgres;
pub mod redis;
pub mod sqlite;
