//! How sinks render events: JSON lines, or one short human line per event.

use std::io::Write;

use fxflow_engine::Envelope;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::fx::{FxEvent, Pair};

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

/// `2026-10-30 00:00:00 GBP/JPY bid 210.698 ask 210.698 (note)`, prices at the pair's display precision.
fn price_line(
    out: &mut Vec<u8>,
    ts: DateTime<Utc>,
    pair: Pair,
    bid: Decimal,
    ask: Decimal,
    note: std::fmt::Arguments<'_>,
) -> std::io::Result<()> {
    write!(
        out,
        "{} {:<7} bid {} ask {} ({note})",
        ts.format("%Y-%m-%d %H:%M:%S"),
        pair.to_string(),
        pair.format_price(bid),
        pair.format_price(ask)
    )
}

fn text_line(event: &FxEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let result = match event {
        FxEvent::CrossRate(c) => price_line(
            out,
            c.ts,
            c.pair,
            c.bid,
            c.ask,
            format_args!("via {}, {}", c.via, c.source),
        ),
        FxEvent::Quote(q) => price_line(out, q.ts, q.pair, q.bid, q.ask, format_args!("{}", q.source)),
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
        FxEvent::AlertRuleChange(c) => match &c.rule {
            Some(rule) => write!(out, "RULE SET {} {} {}", c.id, rule.pair, rule.condition.describe()),
            None => write!(out, "RULE DELETED {}", c.id),
        },
        FxEvent::Candle(c) => write!(
            out,
            "{} CANDLE {} {:<7} O {} H {} L {} C {} ({} ticks{}, {})",
            c.start.format("%Y-%m-%d %H:%M:%S"),
            c.interval_name(),
            c.pair.to_string(),
            c.pair.format_price(c.mid.open),
            c.pair.format_price(c.mid.high),
            c.pair.format_price(c.mid.low),
            c.pair.format_price(c.mid.close),
            c.ticks,
            if c.closed { "" } else { ", open" },
            c.source
        ),
        FxEvent::Volatility(v) => write!(
            out,
            "{} VOLATILITY {} {:<7} {:.2}% ({} returns, {})",
            v.ts.format("%Y-%m-%d %H:%M:%S"),
            v.window_name(),
            v.pair.to_string(),
            v.volatility * 100.0,
            v.samples,
            v.source
        ),
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

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::{AlertFired, CrossRate, Currency, SourceName};

    #[test]
    fn text_lines_use_display_precision() {
        let ts = "2026-10-30T00:00:00Z".parse().unwrap();
        let source = SourceName::intern("ecb").unwrap();
        let cross = FxEvent::CrossRate(CrossRate {
            pair: "GBP/JPY".parse().unwrap(),
            bid: dec!(175.68) / dec!(0.8338),
            ask: dec!(175.68) / dec!(0.8338),
            ts,
            source,
            via: Currency::EUR,
        });
        let alert = FxEvent::AlertFired(AlertFired {
            rule_id: "r1".into(),
            pair: "EUR/USD".parse().unwrap(),
            condition: "above 1.1".into(),
            value: dec!(1.1172),
            previous: None,
            ts,
            source,
            tenant: None,
        });
        let mut out = Vec::new();
        render(
            &[Envelope::unacked(cross), Envelope::unacked(alert)],
            Format::Text,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-10-30 00:00:00 GBP/JPY bid 210.698 ask 210.698 (via EUR, ecb)\n\
             2026-10-30 00:00:00 ALERT r1 EUR/USD above 1.1: 1.11720 (previous none)\n"
        );
    }
}
