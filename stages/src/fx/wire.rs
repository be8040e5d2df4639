//! The compact binary form of the hot event kinds, for `codec: Binary` topics.
//!
//! A cross rate is ~200 bytes of JSON whose two decimals are printed and parsed
//! as text on every hop; here it is 55 bytes plus its source name, whose decimals are rust_decimal's
//! own 16-byte form, so what arrives is bit for bit what was computed. Other
//! kinds travel as JSON inside the engine's frame (`kafka::binary`).
//!
//! Each form starts with a layout tag; a changed layout takes a new tag, so an
//! older worker refuses it by that tag instead of misreading it.
//!
//! ```text
//! tag 1, CrossRate: pair 3+3 bytes, via 3, bid 16, ask 16, ts seconds i64 LE,
//!                   ts nanoseconds u32 LE, source length u8, source bytes
//! ```

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{CrossRate, Currency, FxEvent, Pair, SourceName};

const CROSS_RATE_V1: u8 = 1;

/// Append `event`'s binary form to `out`; `false` for kinds without one.
pub fn write(event: &FxEvent, out: &mut Vec<u8>) -> bool {
    match event {
        FxEvent::CrossRate(c) if c.source.as_str().len() <= usize::from(u8::MAX) => {
            out.reserve(55 + c.source.as_str().len());
            out.push(CROSS_RATE_V1);
            out.extend_from_slice(&c.pair.base.bytes());
            out.extend_from_slice(&c.pair.quote.bytes());
            out.extend_from_slice(&c.via.bytes());
            out.extend_from_slice(&c.bid.serialize());
            out.extend_from_slice(&c.ask.serialize());
            out.extend_from_slice(&c.ts.timestamp().to_le_bytes());
            out.extend_from_slice(&c.ts.timestamp_subsec_nanos().to_le_bytes());
            out.push(c.source.as_str().len() as u8);
            out.extend_from_slice(c.source.as_str().as_bytes());
            true
        }
        _ => false,
    }
}

/// Read what [`write`] wrote.
pub fn read(bytes: &[u8]) -> Result<FxEvent, String> {
    let mut r = Reader { bytes, at: 0 };
    match r.take::<1>()? {
        [CROSS_RATE_V1] => {
            let base = r.currency()?;
            let quote = r.currency()?;
            let pair = Pair::new(base, quote).map_err(|e| e.to_string())?;
            let via = r.currency()?;
            let bid = r.decimal()?;
            let ask = r.decimal()?;
            let seconds = i64::from_le_bytes(r.take()?);
            let nanos = u32::from_le_bytes(r.take()?);
            let ts = DateTime::<Utc>::from_timestamp(seconds, nanos).ok_or("timestamp out of range")?;
            let [len] = r.take()?;
            let name = r.slice(usize::from(len))?;
            let name = std::str::from_utf8(name).map_err(|_| "source name is not UTF-8")?;
            let source = SourceName::intern(name).map_err(|e| e.to_string())?;
            if r.at != bytes.len() {
                return Err("bytes after the cross rate".into());
            }
            Ok(FxEvent::CrossRate(CrossRate {
                pair,
                bid,
                ask,
                ts,
                source,
                via,
            }))
        }
        [tag] => Err(format!(
            "unknown binary layout {tag} (written by a newer fxflow? this build reads layout {CROSS_RATE_V1})"
        )),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn slice(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self.bytes.get(self.at..self.at + n).ok_or("truncated")?;
        self.at += n;
        Ok(slice)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.slice(N)?.try_into().expect("N bytes"))
    }

    fn currency(&mut self) -> Result<Currency, String> {
        Currency::from_bytes(self.take()?).map_err(|e| e.to_string())
    }

    /// rust_decimal's 16 bytes, refused when they are not a decimal it writes (a scale past
    /// 28, or flag bits it never sets) rather than silently normalised.
    fn decimal(&mut self) -> Result<Decimal, String> {
        let bytes: [u8; 16] = self.take()?;
        if bytes[0] != 0 || bytes[1] != 0 || bytes[2] > 28 || bytes[3] & 0x7F != 0 {
            return Err("not an exact decimal".into());
        }
        Ok(Decimal::deserialize(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fxflow_engine::kafka::{binary, WireEvent};
    use rust_decimal_macros::dec;

    fn cross(bid: Decimal, ask: Decimal) -> FxEvent {
        FxEvent::CrossRate(CrossRate {
            pair: "GBP/JPY".parse().unwrap(),
            bid,
            ask,
            ts: "2024-03-01T12:00:00.123456789Z".parse().unwrap(),
            source: SourceName::intern("oanda").unwrap(),
            via: Currency::USD,
        })
    }

    #[test]
    fn a_cross_rate_round_trips_exactly_in_55_bytes_plus_its_source() {
        // 28 significant digits, a negative, a zero with a scale: exact, scale kept.
        for (bid, ask) in [
            (dec!(191.23456789012345678901234567), dec!(191.3)),
            (dec!(-0.000000000000000000000000001), dec!(0.00)),
            (Decimal::MAX, Decimal::MIN),
        ] {
            let event = cross(bid, ask);
            let mut out = Vec::new();
            assert!(write(&event, &mut out));
            assert_eq!(out.len(), 55 + "oanda".len());
            let back = read(&out).unwrap();
            assert_eq!(back, event);
            let FxEvent::CrossRate(back) = back else { unreachable!() };
            assert_eq!(back.bid.to_string(), bid.to_string(), "same digits and scale");
            assert_eq!(back.ask.to_string(), ask.to_string());
        }
    }

    #[test]
    fn damaged_or_newer_forms_are_refused() {
        let mut out = Vec::new();
        write(&cross(dec!(1.1), dec!(1.2)), &mut out);
        assert!(read(&out[..out.len() - 1]).unwrap_err().contains("truncated"));
        let mut newer = out.clone();
        newer[0] = 2;
        assert!(read(&newer).unwrap_err().contains("unknown binary layout 2"));
        let mut unknown = out.clone();
        unknown[1..4].copy_from_slice(b"ZZZ");
        assert!(read(&unknown).is_err());
        let mut same = out.clone();
        same[4..7].copy_from_slice(b"GBP");
        assert!(read(&same).is_err(), "a pair of one currency");
        let mut scale = out.clone();
        scale[10 + 2] = 29;
        assert_eq!(read(&scale).unwrap_err(), "not an exact decimal");
        let mut longer = out;
        longer.push(0);
        assert!(read(&longer).unwrap_err().contains("after"));
    }

    #[test]
    fn other_kinds_travel_as_json_in_the_same_frame() {
        let events = vec![
            cross(dec!(1.1), dec!(1.2)),
            FxEvent::AlertRuleChange(Box::new(crate::fx::AlertRuleChange {
                id: "r1".into(),
                rule: None,
            })),
        ];
        let mut out = Vec::new();
        assert!(!events[1].write_binary(&mut out));
        binary::encode(&events, &mut out).unwrap();
        assert_eq!(binary::decode::<FxEvent>(&out).unwrap(), events);
    }
}
