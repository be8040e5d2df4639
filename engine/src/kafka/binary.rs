//! Binary frames: the compact wire format for internal topics.
//!
//! JSON costs most of a worker's time on a high-rate topic: every decimal is
//! printed as text by the writer and parsed back by the reader. A binary frame
//! carries the events of one message in the application's own compact form
//! ([`WireEvent::write_binary`]) where it has one, and as the JSON that
//! [`Codec::Json`](super::Codec::Json) writes where it does not, so any event
//! kind can travel in a frame and only the hot ones need a binary form.
//!
//! ```text
//! 0x00 0xF5            magic: no JSON text or UTF-8 text starts with these bytes
//! version   u8         FRAME_VERSION; a reader refuses any other
//! count     u32 LE     events in the frame
//! count × { form u8 (0 = JSON, 1 = the application's binary form), len u32 LE, len bytes }
//! ```
//!
//! Old readers fail loudly, never wrongly: a build that knows only JSON finds
//! no JSON here and dead-letters the message as undecodable; a newer frame
//! version is refused by its number ([`DecodeError::Version`]); an
//! application changes its binary layout by giving the new layout a new tag
//! inside its form, which older builds refuse by that tag.

use super::codec::{DecodeError, WireEvent};

/// The frame layout this build writes and reads.
pub const FRAME_VERSION: u8 = 1;

const MAGIC: [u8; 2] = [0x00, 0xF5];
const FORM_JSON: u8 = 0;
const FORM_BINARY: u8 = 1;
const HEADER: usize = MAGIC.len() + 1 + 4;

/// Whether a payload is a binary frame, told by its first two bytes.
pub fn is_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The frame of `events` into `out` (cleared first).
pub fn encode<'a, E: WireEvent + 'a>(events: impl IntoIterator<Item = &'a E>, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(FRAME_VERSION);
    out.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    let mut json = Vec::new();
    for event in events {
        let form_at = out.len();
        out.push(FORM_BINARY);
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        if !event.write_binary(out) {
            out.truncate(start);
            out[form_at] = FORM_JSON;
            super::codec::encode_json(event, &mut json)?;
            out.extend_from_slice(&json);
        }
        let len = u32::try_from(out.len() - start).map_err(|_| "an event larger than 4 GiB".to_owned())?;
        out[form_at + 1..start].copy_from_slice(&len.to_le_bytes());
        count += 1;
    }
    out[MAGIC.len() + 1..HEADER].copy_from_slice(&count.to_le_bytes());
    Ok(())
}

/// The events of a frame, in order.
pub fn decode<E: WireEvent>(bytes: &[u8]) -> Result<Vec<E>, DecodeError> {
    let invalid = |what: &str| DecodeError::Invalid(format!("binary frame: {what}"));
    if !is_frame(bytes) {
        return Err(invalid("no frame header"));
    }
    let version = *bytes.get(MAGIC.len()).ok_or_else(|| invalid("truncated header"))?;
    if version != FRAME_VERSION {
        return Err(DecodeError::Version(u64::from(version)));
    }
    let count = read_u32(bytes, MAGIC.len() + 1).ok_or_else(|| invalid("truncated header"))? as usize;
    // Every event takes at least its five header bytes: a count beyond that is corrupt, and
    // must not size an allocation.
    if count > (bytes.len() - HEADER) / 5 {
        return Err(invalid("event count larger than the message"));
    }
    let mut events = Vec::with_capacity(count);
    let mut at = HEADER;
    for n in 0..count {
        let form = bytes[at];
        let len = read_u32(bytes, at + 1).ok_or_else(|| invalid("truncated event header"))? as usize;
        let body = bytes
            .get(at + 5..at + 5 + len)
            .ok_or_else(|| invalid(&format!("event {n} runs past the end")))?;
        let event = match form {
            FORM_JSON => super::codec::decode_json(body)?,
            FORM_BINARY => E::read_binary(body).map_err(|e| invalid(&format!("event {n}: {e}")))?,
            other => return Err(invalid(&format!("event {n} has unknown form {other}"))),
        };
        events.push(event);
        at += 5 + len;
    }
    if at != bytes.len() {
        return Err(invalid("bytes after the last event"));
    }
    Ok(events)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DeadLetter, Event, DEAD_LETTER_KIND};
    use serde::{Deserialize, Serialize};

    /// `Small` has a binary form (one byte), `Text` travels as JSON inside the frame.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    enum Ev {
        Small { n: u8 },
        Text { text: String },
        Dead { error: String },
    }

    impl Event for Ev {
        fn kind(&self) -> &'static str {
            match self {
                Ev::Small { .. } => "Small",
                Ev::Text { .. } => "Text",
                Ev::Dead { .. } => DEAD_LETTER_KIND,
            }
        }
        fn dead_letter(letter: DeadLetter<Self>) -> Self {
            Ev::Dead { error: letter.error }
        }
    }

    impl WireEvent for Ev {
        const KINDS: &'static [&'static str] = &["Small", "Text", DEAD_LETTER_KIND];
        fn write_key(&self, _out: &mut String) -> bool {
            false
        }
        fn write_binary(&self, out: &mut Vec<u8>) -> bool {
            match self {
                Ev::Small { n } => {
                    out.extend_from_slice(&[7, *n]);
                    true
                }
                _ => false,
            }
        }
        fn read_binary(bytes: &[u8]) -> Result<Self, String> {
            match bytes {
                [7, n] => Ok(Ev::Small { n: *n }),
                [tag, ..] => Err(format!("unknown binary layout {tag}")),
                [] => Err("empty".into()),
            }
        }
    }

    fn events() -> Vec<Ev> {
        vec![
            Ev::Small { n: 1 },
            Ev::Text {
                text: "a \"quoted\" café".into(),
            },
            Ev::Small { n: 255 },
        ]
    }

    #[test]
    fn frames_round_trip_with_binary_and_json_forms_mixed() {
        let mut out = Vec::new();
        encode(&events(), &mut out).unwrap();
        assert!(is_frame(&out));
        assert_eq!(&out[..HEADER], &[0x00, 0xF5, FRAME_VERSION, 3, 0, 0, 0]);
        // The binary form is what the application wrote; the other is Codec::Json's text.
        assert_eq!(&out[HEADER..HEADER + 7], &[FORM_BINARY, 2, 0, 0, 0, 7, 1]);
        assert_eq!(out[HEADER + 7], FORM_JSON);
        assert_eq!(decode::<Ev>(&out).unwrap(), events());
        encode::<Ev>(&[], &mut out).unwrap();
        assert_eq!(decode::<Ev>(&out).unwrap(), vec![]);
    }

    #[test]
    fn json_text_is_never_a_frame_and_a_frame_is_never_json() {
        assert!(!is_frame(br#"{"v":1,"kind":"Small","n":1}"#));
        assert!(!is_frame(b""));
        let mut out = Vec::new();
        encode(&events(), &mut out).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_err());
        // 0xF5 never occurs in UTF-8: no text payload starts like a frame.
        assert!(std::str::from_utf8(&out[..2]).is_err());
    }

    #[test]
    fn newer_or_damaged_frames_are_refused_not_misread() {
        let mut out = Vec::new();
        encode(&events(), &mut out).unwrap();
        let mut newer = out.clone();
        newer[2] = FRAME_VERSION + 1;
        assert_eq!(
            decode::<Ev>(&newer),
            Err(DecodeError::Version(u64::from(FRAME_VERSION) + 1))
        );
        let refused = |bytes: &[u8]| match decode::<Ev>(bytes) {
            Err(DecodeError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(refused(&out[..out.len() - 1]).contains("past the end"));
        assert!(refused(&out[..4]).contains("truncated"));
        let mut longer = out.clone();
        longer.push(0);
        assert!(refused(&longer).contains("after the last event"));
        let mut huge = out.clone();
        huge[3..7].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(refused(&huge).contains("count"));
        let mut unknown_layout = out.clone();
        unknown_layout[HEADER + 5] = 9;
        assert!(refused(&unknown_layout).contains("unknown binary layout 9"));
        let mut unknown_form = out;
        unknown_form[HEADER] = 4;
        assert!(refused(&unknown_form).contains("unknown form 4"));
    }
}
