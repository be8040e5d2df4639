//! Sinks: one stage kind per file.

pub mod elasticsearch;
pub mod email;
pub mod jsonl_file;
pub mod null;
pub mod postgres;
pub mod redis;
pub mod sqlite;
pub mod stdout;
pub mod webhook;
