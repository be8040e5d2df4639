//! How events are written to and read from topics.
//!
//! One interface, [`Codec`], chosen per sink. JSON is the default because
//! other consumers (a notebook, `kcat`, another team's service) can read it as
//! is; [`Codec::Binary`] ([`super::binary`]) is for internal topics that only
//! workers read, where JSON's printing and parsing of every number is most of
//! a worker's cost. Every message carries its format version first —
//! `{"v":1,"kind":"CrossRate",...}`, or a binary frame's version byte — so a
//! reader refuses a newer layout instead of misreading it. Sources read every
//! format whatever their `codec:` says.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Event;

/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// An application event that can cross process boundaries.
pub trait WireEvent: Event + Serialize + DeserializeOwned {
    /// Every kind name the application defines (what a Kafka source may declare in `kinds`).
    const KINDS: &'static [&'static str];

    /// The field of the serialized event that names its kind (serde's `tag`):
    /// pipeline tests write events as `Kind(field: ...)` and match on it.
    const KIND_FIELD: &'static str = "kind";

    /// The message key: events with one key land on one partition, in order.
    /// Writes the key into `out` and returns `true`, or returns `false` for no key.
    fn write_key(&self, out: &mut String) -> bool;

    /// The event a keyed message without payload stands for (a tombstone in a
    /// compacted topic: "this key was deleted"). `None`: such messages are errors.
    fn tombstone(_key: &[u8]) -> Option<Self> {
        None
    }

    /// The event's compact form in a [`Codec::Binary`] frame: append it to
    /// `out` and return `true`, or return `false` (the default) to have the
    /// event travel as JSON inside the frame — only the hot kinds need one.
    /// Start the form with a layout tag of the application's choosing, and
    /// give a changed layout a new tag, so older builds refuse it.
    fn write_binary(&self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Read what [`WireEvent::write_binary`] wrote.
    fn read_binary(_bytes: &[u8]) -> Result<Self, String> {
        Err("this build has no binary form for events".into())
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message has no format version field `v`")]
    NoVersion,
    #[error("format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    Version(u64),
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// One event as a JSON object with the version first: `{"v":1,"kind":...}`.
pub fn encode_json<E: Serialize>(event: &E, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(FORMAT_VERSION.to_string().as_bytes());
    let start = out.len();
    serde_json::to_writer(&mut *out, event).map_err(|e| e.to_string())?;
    // The event is an object `{...}`: its opening brace becomes the comma after the version.
    match out.get(start..start + 2) {
        Some(b"{}") => {
            out.truncate(start);
            out.push(b'}');
        }
        Some([b'{', _]) => out[start] = b',',
        _ => return Err("event does not serialize as a JSON object".into()),
    }
    Ok(())
}

pub(super) fn decode_json<E: DeserializeOwned>(bytes: &[u8]) -> Result<E, DecodeError> {
    let version = match leading_version(bytes) {
        Some(v) => v,
        None => {
            // Another writer may order fields differently: find `v` the slow way.
            #[derive(serde::Deserialize)]
            struct VersionOnly {
                v: Option<u64>,
            }
            let found: VersionOnly = serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))?;
            found.v.ok_or(DecodeError::NoVersion)?
        }
    };
    if version != u64::from(FORMAT_VERSION) {
        return Err(DecodeError::Version(version));
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// The version of a message we wrote ourselves (`{"v":N,`), without parsing the rest.
fn leading_version(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || !matches!(rest.get(digits), Some(b',') | Some(b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DeadLetter, DEAD_LETTER_KIND};
    use crate::kafka::{decode, Codec};
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    enum Ev {
        Reading { key: String, value: String },
        Empty {},
        Dead { error: String },
    }

    impl Event for Ev {
        fn kind(&self) -> &'static str {
            match self {
                Ev::Reading { .. } => "Reading",
                Ev::Empty {} => "Empty",
                Ev::Dead { .. } => DEAD_LETTER_KIND,
            }
        }
        fn dead_letter(letter: DeadLetter<Self>) -> Self {
            Ev::Dead { error: letter.error }
        }
    }

    impl WireEvent for Ev {
        const KINDS: &'static [&'static str] = &["Reading", "Empty", DEAD_LETTER_KIND];
        fn write_key(&self, out: &mut String) -> bool {
            match self {
                Ev::Reading { key, .. } => {
                    out.push_str(key);
                    true
                }
                _ => false,
            }
        }
    }

    fn reading() -> Ev {
        Ev::Reading {
            key: "sensor-7".into(),
            value: "1.16170000000000000000000001".into(),
        }
    }

    #[test]
    fn version_comes_first_and_round_trips() {
        let mut buf = Vec::new();
        Codec::Json.encode(&reading(), &mut buf).unwrap();
        let text = std::str::from_utf8(&buf).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"kind":"Reading","key":"sensor-7","value":"1.16170000000000000000000001"}"#
        );
        assert_eq!(decode::<Ev>(&buf).unwrap(), reading());
    }

    #[test]
    fn an_object_without_fields_still_encodes() {
        let mut buf = Vec::new();
        Codec::Json.encode(&Ev::Empty {}, &mut buf).unwrap();
        assert_eq!(std::str::from_utf8(&buf).unwrap(), r#"{"v":1,"kind":"Empty"}"#);
    }

    #[test]
    fn other_writers_may_order_fields_differently() {
        let text = br#"{"kind":"Reading","value":"2","key":"sensor-9","v":1}"#;
        assert!(matches!(decode::<Ev>(text).unwrap(), Ev::Reading { .. }));
    }

    #[test]
    fn refuses_unknown_versions_and_garbage() {
        assert_eq!(
            decode::<Ev>(br#"{"v":2,"kind":"Reading","key":"x","value":"1"}"#),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            decode::<Ev>(br#"{"kind":"Reading","key":"x","value":"1"}"#),
            Err(DecodeError::NoVersion)
        );
        assert!(matches!(
            decode::<Ev>(b"\x00\x01not json"),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            decode::<Ev>(br#"{"v":1,"kind":"Nope"}"#),
            Err(DecodeError::Invalid(_))
        ));
    }
}
