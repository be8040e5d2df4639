//! serde `Deserializer` over the spanned RON tree.
//!
//! Every error carries the span of the innermost node it came from, so an
//! unknown field points at the field, a wrong type at the value and a missing
//! field at the struct that lacks it.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::value::{Name, Node, Span, Value};

/// A deserialization error and, once known, where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub span: Option<Span>,
}

impl DeError {
    fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            span: None,
        }
    }
}

/// Deserialize `T` from a node.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer::new(node)).map_err(|e| e.at(node.span))
}

/// Deserializes one node. `skip` names struct fields that belong to someone
/// else (the engine's `inputs`, `buffer`, … on a stage) and are hidden here.
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    skip: &'a [&'a str],
}

impl<'a> NodeDeserializer<'a> {
    pub fn new(node: &'a Node) -> Self {
        Self { node, skip: &[] }
    }

    pub fn skipping(node: &'a Node, skip: &'a [&'a str]) -> Self {
        Self { node, skip }
    }

    fn child(&self, node: &'a Node) -> NodeDeserializer<'a> {
        NodeDeserializer { node, skip: &[] }
    }

    fn mismatch(&self, expected: &str) -> DeError {
        DeError {
            message: format!("expected {expected}, found {}", self.node.value.describe()),
            span: Some(self.node.span),
        }
    }

    fn number_text(&self, expected: &str) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Number(text) => Ok(text),
            _ => Err(self.mismatch(expected)),
        }
    }

    fn parse_int<T: TryFrom<i128>>(&self, expected: &str) -> Result<T, DeError> {
        let text = self.number_text(expected)?;
        let value = parse_integer(text).ok_or_else(|| DeError {
            message: format!("expected {expected}, found `{text}`"),
            span: Some(self.node.span),
        })?;
        T::try_from(value).map_err(|_| DeError {
            message: format!("`{text}` is out of range for {expected}"),
            span: Some(self.node.span),
        })
    }

    /// Maps and structs read alike: `{ "key": value }`, `(field: value)`, or `()` for "all defaults".
    fn map_like<'de, V: Visitor<'de>>(self, visitor: V, expected: &str) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapEntries {
                entries: entries.iter(),
                value: None,
            }),
            Value::Struct { fields, .. } => visitor.visit_map(Fields::new(fields, self.skip)),
            Value::Unit => visitor.visit_map(Fields::new(&[], self.skip)),
            _ => Err(self.mismatch(expected)),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn parse_float(&self) -> Result<f64, DeError> {
        let text = self.number_text("a number")?;
        text.parse::<f64>().map_err(|_| DeError {
            message: format!("`{text}` is not a number"),
            span: Some(self.node.span),
        })
    }
}

fn parse_integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = match digits.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i128>().ok()?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident : $ty:ty, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let value: $ty = self.parse_int($what)?;
                visitor.$visit(value).map_err(|e: DeError| e.at(self.node.span))
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span;
        let result = match &self.node.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            // Integers go as integers; anything with a fraction goes as its text, so
            // types such as `Decimal` parse it exactly instead of through a float.
            Value::Number(text) => match parse_integer(text) {
                Some(i) if i >= 0 && i <= u64::MAX as i128 => visitor.visit_u64(i as u64),
                Some(i) if i >= i64::MIN as i128 => visitor.visit_i64(i as i64),
                _ => visitor.visit_str(text),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Char(c) => visitor.visit_char(*c),
            Value::Ident(name) if name == "None" => visitor.visit_none(),
            Value::Ident(name) => visitor.visit_str(name),
            Value::Unit => visitor.visit_unit(),
            Value::List(items) => visitor.visit_seq(Seq {
                items: items.iter(),
                span,
            }),
            Value::Tuple {
                name: Some(name),
                items,
            } if name.text == "Some" && items.len() == 1 => visitor.visit_some(self.child(&items[0])),
            Value::Tuple { items, .. } => visitor.visit_seq(Seq {
                items: items.iter(),
                span,
            }),
            Value::Map(entries) => visitor.visit_map(MapEntries {
                entries: entries.iter(),
                value: None,
            }),
            Value::Struct { fields, .. } => visitor.visit_map(Fields::new(fields, self.skip)),
        };
        result.map_err(|e| e.at(span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Bool(b) => visitor.visit_bool(b).map_err(|e: DeError| e.at(self.node.span)),
            _ => Err(self.mismatch("`true` or `false`")),
        }
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8: i8, "a small integer";
        deserialize_i16 => visit_i16: i16, "an integer";
        deserialize_i32 => visit_i32: i32, "an integer";
        deserialize_i64 => visit_i64: i64, "an integer";
        deserialize_u8 => visit_u8: u8, "a small non-negative integer";
        deserialize_u16 => visit_u16: u16, "a non-negative integer";
        deserialize_u32 => visit_u32: u32, "a non-negative integer";
        deserialize_u64 => visit_u64: u64, "a non-negative integer";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = self.parse_float()?;
        visitor.visit_f64(value).map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Char(c) => visitor.visit_char(*c),
            Value::String(s) if s.chars().count() == 1 => visitor.visit_char(s.chars().next().unwrap_or_default()),
            _ => Err(self.mismatch("a character")),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor.visit_str(s),
            // A number where text is wanted keeps its exact digits (decimal money fields).
            Value::Number(text) => visitor.visit_str(text),
            _ => Err(self.mismatch("a string")),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor
                .visit_bytes(s.as_bytes())
                .map_err(|e: DeError| e.at(self.node.span)),
            _ => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Ident(name) if name == "None" => visitor.visit_none(),
            Value::Tuple {
                name: Some(name),
                items,
            } if name.text == "Some" && items.len() == 1 => visitor.visit_some(self.child(&items[0])),
            // Like RON's `implicit_some`: a bare value where an option is wanted means `Some`.
            _ => visitor.visit_some(self),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Unit => visitor.visit_unit().map_err(|e: DeError| e.at(self.node.span)),
            _ => Err(self.mismatch("`()`")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Ident(found) if found == name => visitor.visit_unit(),
            Value::Unit => visitor.visit_unit(),
            _ => Err(self.mismatch(&format!("`{name}`"))),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Tuple {
                name: Some(found),
                items,
            } if found.text == name && items.len() == 1 => visitor.visit_newtype_struct(self.child(&items[0])),
            _ => visitor.visit_newtype_struct(self),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span;
        match &self.node.value {
            Value::List(items) | Value::Tuple { items, .. } => visitor.visit_seq(Seq {
                items: items.iter(),
                span,
            }),
            Value::Unit => visitor.visit_seq(Seq { items: [].iter(), span }),
            _ => Err(self.mismatch("a list `[...]`")),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map_like(visitor, "a map `{...}`")
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // A written struct name is documentation for the reader (`Rule(...)`); it is
        // not checked against Rust type names, which users never see.
        self.map_like(visitor, "a struct `(field: value, ...)`")
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let access = match &self.node.value {
            Value::Ident(name) | Value::String(name) => Enum::Unit {
                name,
                span: self.node.span,
            },
            Value::Tuple {
                name: Some(name),
                items,
            } => Enum::Tuple {
                name,
                items,
                span: self.node.span,
            },
            Value::Struct {
                name: Some(name),
                fields,
            } => Enum::Struct {
                name,
                fields,
                span: self.node.span,
            },
            _ => return Err(self.mismatch("a variant such as `Name` or `Name(...)`")),
        };
        visitor.visit_enum(access).map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Ident(s) | Value::String(s) => visitor.visit_str(s),
            _ => Err(self.mismatch("an identifier")),
        }
        .map_err(|e: DeError| e.at(self.node.span))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
    span: Span,
}

impl<'de, 'a> de::SeqAccess<'de> for Seq<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer::new(node))
                .map(Some)
                .map_err(|e| e.at(node.span)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        let _ = self.span;
        Some(self.items.len())
    }
}

struct MapEntries<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de, 'a> de::MapAccess<'de> for MapEntries<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDeserializer::new(key))
                    .map(Some)
                    .map_err(|e| e.at(key.span))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        value_after_key(&mut self.value, seed)
    }
}

/// The value whose key a map access just returned.
fn value_after_key<'de, V: DeserializeSeed<'de>>(value: &mut Option<&Node>, seed: V) -> Result<V::Value, DeError> {
    let node = value
        .take()
        .ok_or_else(|| de::Error::custom("value requested before key"))?;
    seed.deserialize(NodeDeserializer::new(node))
        .map_err(|e| e.at(node.span))
}

struct Fields<'a> {
    fields: std::slice::Iter<'a, (Name, Node)>,
    skip: &'a [&'a str],
    value: Option<&'a Node>,
}

impl<'a> Fields<'a> {
    fn new(fields: &'a [(Name, Node)], skip: &'a [&'a str]) -> Self {
        Self {
            fields: fields.iter(),
            skip,
            value: None,
        }
    }
}

impl<'de, 'a> de::MapAccess<'de> for Fields<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for (name, value) in self.fields.by_ref() {
            if self.skip.contains(&name.text.as_str()) {
                continue;
            }
            self.value = Some(value);
            let key: de::value::StrDeserializer<'_, DeError> = name.text.as_str().into_deserializer();
            return seed.deserialize(key).map(Some).map_err(|e| e.at(name.span));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        value_after_key(&mut self.value, seed)
    }
}

enum Enum<'a> {
    Unit {
        name: &'a str,
        span: Span,
    },
    Tuple {
        name: &'a Name,
        items: &'a [Node],
        span: Span,
    },
    Struct {
        name: &'a Name,
        fields: &'a [(Name, Node)],
        span: Span,
    },
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let (name, span) = match &self {
            Enum::Unit { name, span } => (*name, *span),
            Enum::Tuple { name, .. } | Enum::Struct { name, .. } => (name.text.as_str(), name.span),
        };
        let key: de::value::StrDeserializer<'_, DeError> = name.into_deserializer();
        let value = seed.deserialize(key).map_err(|e| e.at(span))?;
        Ok((value, self))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for Enum<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self {
            Enum::Unit { .. } => Ok(()),
            Enum::Tuple { items: [], .. } => Ok(()),
            Enum::Struct { fields: [], .. } => Ok(()),
            Enum::Tuple { name, .. } | Enum::Struct { name, .. } => Err(DeError {
                message: format!("`{}` takes no arguments", name.text),
                span: Some(name.span),
            }),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self {
            Enum::Tuple { items: [item], .. } => seed
                .deserialize(NodeDeserializer::new(item))
                .map_err(|e| e.at(item.span)),
            Enum::Tuple { name, .. } | Enum::Struct { name, .. } => Err(DeError {
                message: format!("`{}` takes exactly one value: `{}(value)`", name.text, name.text),
                span: Some(name.span),
            }),
            Enum::Unit { name, span } => Err(DeError {
                message: format!("`{name}` needs a value: `{name}(value)`"),
                span: Some(span),
            }),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self {
            Enum::Tuple { items, span, .. } => visitor.visit_seq(Seq {
                items: items.iter(),
                span,
            }),
            Enum::Struct { name, .. } => Err(DeError {
                message: format!("`{}` takes values in order, not named fields", name.text),
                span: Some(name.span),
            }),
            Enum::Unit { name, span } => Err(DeError {
                message: format!("`{name}` needs values: `{name}(...)`"),
                span: Some(span),
            }),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            Enum::Struct { fields, span, .. } => visitor.visit_map(Fields::new(fields, &[])).map_err(|e| e.at(span)),
            Enum::Tuple { items: [], span, .. } => visitor.visit_map(Fields::new(&[], &[])).map_err(|e| e.at(span)),
            Enum::Tuple { name, .. } => Err(DeError {
                message: format!("`{}` takes named fields: `{}(field: value, ...)`", name.text, name.text),
                span: Some(name.span),
            }),
            Enum::Unit { name, span } => visitor.visit_map(Fields::new(&[], &[])).map_err(|e| DeError {
                message: format!("`{name}(...)`: {}", e.message),
                span: Some(span),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::value::parse;
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Buffer {
        capacity: usize,
        #[serde(default)]
        when_full: WhenFull,
        note: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "snake_case")]
    enum WhenFull {
        #[default]
        Block,
        DropNewest,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Condition {
        Above(String),
        Window { percent: String, window: String },
        Never,
    }

    fn de<T: de::DeserializeOwned>(text: &str) -> Result<T, DeError> {
        from_node(&parse(text).unwrap())
    }

    #[test]
    fn structs_enums_options() {
        let b: Buffer = de("(capacity: 10, when_full: drop_newest, note: \"x\")").unwrap();
        assert_eq!(
            b,
            Buffer {
                capacity: 10,
                when_full: WhenFull::DropNewest,
                note: Some("x".into())
            }
        );
        let b: Buffer = de("Buffer(capacity: 3, note: Some(\"y\"))").unwrap();
        assert_eq!(b.note.as_deref(), Some("y"));
        let c: Vec<Condition> = de("[Above(1.10), Window(percent: 2.5, window: \"1h\"), Never]").unwrap();
        assert_eq!(
            c[0],
            Condition::Above("1.10".into()),
            "numbers keep their digits when read as text"
        );
        assert_eq!(
            c[1],
            Condition::Window {
                percent: "2.5".into(),
                window: "1h".into()
            }
        );
        assert_eq!(c[2], Condition::Never);
    }

    #[test]
    fn errors_carry_the_span_of_the_culprit() {
        let text = "(capacity: 10, when_fool: block)";
        let err = de::<Buffer>(text).unwrap_err();
        assert!(err.message.contains("unknown field `when_fool`"), "{}", err.message);
        assert_eq!(err.span.unwrap().start, text.find("when_fool").unwrap());

        let text = "(capacity: \"ten\")";
        let err = de::<Buffer>(text).unwrap_err();
        assert_eq!(err.span.unwrap().start, text.find("\"ten\"").unwrap());

        let text = "(when_full: block)";
        let err = de::<Buffer>(text).unwrap_err();
        assert!(err.message.contains("missing field `capacity`"));
        assert_eq!(err.span.unwrap().start, 0);

        let text = "[Abov(1)]";
        let err = de::<Vec<Condition>>(text).unwrap_err();
        assert!(err.message.contains("unknown variant `Abov`"));
        assert_eq!(err.span.unwrap().start, 1);

        let err = de::<u8>("300").unwrap_err();
        assert!(err.message.contains("out of range"));
    }

    #[test]
    fn skipped_fields_are_invisible() {
        let node = parse("Kind(inputs: [\"a\"], capacity: 1)").unwrap();
        let b = Buffer::deserialize(NodeDeserializer::skipping(&node, &["inputs"])).unwrap();
        assert_eq!(b.capacity, 1);
    }
}
