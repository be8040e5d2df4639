//! How sinks render events: JSON lines, or one short human line per event.

use std::io::Write;

use fxflow_engine::Envelope;
use serde::{Deserialize, Serialize};

use crate::fx::FxEvent;

/// Output encoding of a text sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line, tagged with `kind` (full decimal precision).
    Json,
    /// One line for people: prices at the pair's display precision.
    #[default]
    Text,
}

/// Append one line per event to `out`.
pub fn render(batch: &[Envelope<FxEvent>], format: Format, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    for envelope in batch {
        match format {
            Format::Json => serde_json::to_writer(&mut *out, &envelope.event)?,
            Format::Text => text_line(&envelope.event, out)?,
        }
        out.push(b'\n');
    }
    Ok(())
}

fn text_line(event: &FxEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let result = match event {
        FxEvent::CrossRate(c) => write!(
            out,
            "{} {:<7} bid {} ask {} (via {}, {})",
            c.ts.format("%Y-%m-%d %H:%M:%S"),
            c.pair.to_string(),
            c.pair.format_price(c.bid),
            c.pair.format_price(c.ask),
            c.via,
            c.source
        ),
        FxEvent::Quote(q) => write!(
            out,
            "{} {:<7} bid {} ask {} ({})",
            q.ts.format("%Y-%m-%d %H:%M:%S"),
            q.pair.to_string(),
            q.pair.format_price(q.bid),
            q.pair.format_price(q.ask),
            q.source
        ),
        FxEvent::AlertFired(a) => {
            let previous = a.previous.map_or_else(|| "none".to_owned(), |p| a.pair.format_price(p));
            write!(
                out,
                "{} ALERT {} {} {}: {} (previous {previous})",
                a.ts.format("%Y-%m-%d %H:%M:%S"),
                a.rule_id,
                a.pair,
                a.condition,
                a.pair.format_price(a.value)
            )
        }
        FxEvent::DeadLetter(d) => write!(out, "DEAD LETTER from {} ({}): {}", d.stage, d.reason, d.error),
        FxEvent::QuoteSnapshot(s) => {
            write!(
                out,
                "{} snapshot {} base {}:",
                s.ts.format("%Y-%m-%d %H:%M:%S"),
                s.source,
                s.base
            )
            .map_err(serde_json::Error::io)?;
            for q in &s.quotes {
                write!(out, " {} {}", q.pair, q.pair.format_price(q.mid())).map_err(serde_json::Error::io)?;
            }
            Ok(())
        }
    };
    result.map_err(serde_json::Error::io)
}
