//! RON read into a tree that remembers where every value was written
//! ([`value`]), and a serde deserializer over that tree ([`de`]) whose errors
//! carry the position of the value at fault. Numbers stay as written, so a
//! decimal is never rounded through a float.

pub mod de;
pub mod value;
