//! Resources: named connections shared by stages (`resources: { "cache": Redis(...) }`).

pub mod elasticsearch;
pub mod postgres;
pub mod redis;
pub mod sqlite;
