//! Extending fxflow with a stage of your own.
//!
//! fxflow's stages are plain Rust types registered by name, so a crate outside
//! the project adds a stage kind without touching `fxflow-engine` or
//! `fxflow-stages`. This crate is the worked example: [`spread_guard`] defines
//! a `SpreadGuard` transform, [`registry`] adds it to the standard registry,
//! the `fxflow-examples` binary runs pipeline files with that registry, and
//! `pipelines/spread-guard.ron` uses it.
//!
//! # Writing a stage
//!
//! 1. **A config struct**, one per stage kind: `#[derive(Deserialize,
//!    schemars::JsonSchema)]` with `#[serde(deny_unknown_fields)]`. Its fields
//!    are what pipeline files write inside `Kind(...)`; the engine strips its
//!    own fields (`inputs`, `buffer`, `retry`) first. Doc comments on the
//!    struct and its fields become the stage reference (`docs` command). Money
//!    fields are `rust_decimal::Decimal`: RON numbers reach them as their exact
//!    text, never through a float.
//! 2. **`impl StageConfig<FxEvent>`** for it: the [`Shape`](fxflow_engine::Shape);
//!    the event kinds it `accepts` and `emits` (use the names in
//!    [`fxflow_stages::fx::kind`]), and `emits_given` for a filter that passes
//!    kinds through, so every edge is type-checked before anything starts;
//!    `check` for I/O-free validation, returning
//!    [`ConfigProblem`](fxflow_engine::ConfigProblem)s that are reported at the
//!    field's line and column; and `build`, the only place that may do I/O.
//! 3. **The runtime stage.** A transform that maps one event to zero or more is
//!    a [`FunctionTransform`](fxflow_engine::FunctionTransform): `emit.push`
//!    what passes, `emit.reject` what it cannot handle — rejected events go to
//!    the stage's `errors` output (`"name.errors"` in a downstream `inputs`)
//!    and are counted in `fxflow_stage_errors_total{error_type=reason}`. The
//!    engine carries acknowledgement tokens, batching and metrics for you.
//!    Stages that keep time use [`TaskTransform`](fxflow_engine::TaskTransform);
//!    sources and sinks implement [`Source`](fxflow_engine::Source) and
//!    [`Sink`](fxflow_engine::Sink).
//! 4. **Tests inline**: [`fxflow_engine::testkit::run_transform`] feeds events
//!    through a function transform exactly as the engine does;
//!    [`fxflow_engine::pipeline_file::load_str`] checks how a pipeline file using the
//!    stage parses and validates.
//! 5. **Register it** under the name pipeline files use, on top of
//!    [`fxflow_stages::registry()`] — see [`registry`] — and run pipelines with
//!    that registry (`cargo run -p fxflow-examples -- run FILE`).

pub mod spread_guard;

use fxflow_engine::Registry;
use fxflow_stages::fx::FxEvent;

/// The standard fxflow registry plus this crate's stages:
/// `SpreadGuard` ([`spread_guard::SpreadGuardConfig`]).
pub fn registry() -> Registry<FxEvent> {
    let mut registry = fxflow_stages::registry();
    registry.stage::<spread_guard::SpreadGuardConfig>("SpreadGuard");
    registry
}
