//! A spanned RON syntax tree.
//!
//! We parse RON ourselves instead of handing the file to the `ron` crate because
//! validation must report *every* problem with its line and column: the `ron`
//! crate stops at the first error and forgets where values came from. This
//! parser keeps the byte span of every node, so later passes (unknown stage
//! kind, unknown input, duplicate name, kind mismatch, …) can point at the exact
//! text, and each stage's config is deserialized from its own subtree so one bad
//! stage does not hide problems in the others.

use std::fmt;

/// A byte range in the (interpolated) pipeline text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// A name with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// One RON value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    /// A number literal, kept as written so decimals are never rounded through a float.
    Number(String),
    String(String),
    Char(char),
    /// A bare identifier: a unit enum variant (`block`), `None`, or a unit struct.
    Ident(String),
    /// `()`.
    Unit,
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// `Name(field: value, ...)` or `(field: value, ...)`.
    Struct {
        name: Option<Name>,
        fields: Vec<(Name, Node)>,
    },
    /// `Name(value, ...)` or `(value, ...)`; `Some(x)` is a named tuple too.
    Tuple {
        name: Option<Name>,
        items: Vec<Node>,
    },
}

fn items_canonical(out: &mut String, items: &[Node]) {
    for item in items {
        item.value.write_canonical(out);
        out.push(',');
    }
}

impl Value {
    fn write_canonical(&self, out: &mut String) {
        use std::fmt::Write;
        let name = |out: &mut String, name: &Option<Name>| {
            if let Some(name) = name {
                out.push_str(&name.text);
            }
        };
        match self {
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(n),
            Value::String(s) => {
                let _ = write!(out, "{s:?}");
            }
            Value::Char(c) => {
                let _ = write!(out, "{c:?}");
            }
            Value::Ident(i) => out.push_str(i),
            Value::Unit => out.push_str("()"),
            Value::List(items) => {
                out.push('[');
                items_canonical(out, items);
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                for (key, value) in entries {
                    key.value.write_canonical(out);
                    out.push(':');
                    value.value.write_canonical(out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Struct { name: n, fields } => {
                name(out, n);
                out.push('(');
                for (field, value) in fields {
                    out.push_str(&field.text);
                    out.push(':');
                    value.value.write_canonical(out);
                    out.push(',');
                }
                out.push(')');
            }
            Value::Tuple { name: n, items } => {
                name(out, n);
                out.push('(');
                items_canonical(out, items);
                out.push(')');
            }
        }
    }

    /// What the value is, for error messages ("expected a list, found a string").
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Char(_) => "a character",
            Value::Ident(_) => "an identifier",
            Value::Unit => "`()`",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
            Value::Struct { .. } => "a struct",
            Value::Tuple { .. } => "a tuple",
        }
    }
}

impl Node {
    /// The value in one canonical text, without positions, whitespace or
    /// comments: two nodes that mean the same have the same text (a reload
    /// compares stages by it).
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.value.write_canonical(&mut out);
        out
    }

    /// The named field of a struct node, if this is a struct and has it.
    pub fn field(&self, name: &str) -> Option<(&Name, &Node)> {
        match &self.value {
            Value::Struct { fields, .. } => fields.iter().find(|(k, _)| k.text == name).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A syntax error: where, what, and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parse a whole RON document into a spanned tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        depth: 0,
    };
    p.skip_trivia()?;
    p.skip_attributes()?;
    let node = p.value()?;
    p.skip_trivia()?;
    if p.pos < p.src.len() {
        return Err(p.error_here(
            "unexpected text after the end of the document",
            Some("a pipeline file holds one value, `Pipeline(...)`; check for an extra `)` or `]`"),
        ));
    }
    Ok(node)
}

/// Deep nesting is never a real pipeline; refusing it keeps the parser from overflowing the stack.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error_at(&self, span: Span, message: impl Into<String>, hint: Option<&str>) -> SyntaxError {
        SyntaxError {
            span,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    fn error_here(&self, message: impl Into<String>, hint: Option<&str>) -> SyntaxError {
        let end = self.pos + self.peek().map_or(0, char::len_utf8);
        self.error_at(Span::new(self.pos, end), message, hint)
    }

    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        loop {
            let rest = self.rest();
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if rest.starts_with("/*") {
                // RON block comments nest.
                let start = self.pos;
                self.pos += 2;
                let mut level = 1;
                while level > 0 {
                    let rest = self.rest();
                    if rest.is_empty() {
                        return Err(self.error_at(
                            Span::new(start, start + 2),
                            "unterminated block comment",
                            Some("close it with `*/`"),
                        ));
                    } else if rest.starts_with("/*") {
                        level += 1;
                        self.pos += 2;
                    } else if rest.starts_with("*/") {
                        level -= 1;
                        self.pos += 2;
                    } else {
                        self.bump();
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    /// `#![enable(...)]` extension headers are accepted and ignored.
    fn skip_attributes(&mut self) -> Result<(), SyntaxError> {
        while self.rest().starts_with("#!") {
            match self.rest().find(']') {
                Some(i) => self.pos += i + 1,
                None => return Err(self.error_here("unterminated `#![...]` attribute", None)),
            }
            self.skip_trivia()?;
        }
        Ok(())
    }

    fn expect(&mut self, want: char, hint: Option<&str>) -> Result<(), SyntaxError> {
        self.skip_trivia()?;
        match self.peek() {
            Some(c) if c == want => {
                self.pos += c.len_utf8();
                Ok(())
            }
            Some(c) => Err(self.error_here(format!("expected `{want}`, found `{c}`"), hint)),
            None => Err(self.error_here(format!("expected `{want}`, found the end of the file"), hint)),
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        self.skip_trivia()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here("values are nested too deeply", None));
        }
        let node = self.value_inner();
        self.depth -= 1;
        node
    }

    fn value_inner(&mut self) -> Result<Node, SyntaxError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.error_here("expected a value, found the end of the file", None));
        };
        let value = match c {
            '"' => Value::String(self.string()?),
            'r' if self.rest().starts_with("r\"") || self.rest().starts_with("r#") => Value::String(self.raw_string()?),
            '\'' => Value::Char(self.char_literal()?),
            '[' => {
                self.bump();
                let items = self.comma_list(']', |p| p.value())?;
                Value::List(items)
            }
            '{' => {
                self.bump();
                let entries = self.comma_list('}', |p| {
                    let key = p.value()?;
                    p.expect(':', Some("map entries are written `key: value`"))?;
                    let value = p.value()?;
                    Ok((key, value))
                })?;
                Value::Map(entries)
            }
            '(' => self.parenthesized(None)?,
            c if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => Value::Number(self.number()?),
            c if c.is_alphabetic() || c == '_' => {
                let name = self.ident();
                self.skip_trivia()?;
                match name.text.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "inf" | "NaN" => Value::Number(name.text),
                    _ if self.peek() == Some('(') => self.parenthesized(Some(name))?,
                    _ => Value::Ident(name.text),
                }
            }
            other => {
                return Err(self.error_here(
                    format!("expected a value, found `{other}`"),
                    Some("values are strings (\"...\"), numbers, lists [...], maps {...} or Kind(field: value)"),
                ))
            }
        };
        Ok(Node {
            value,
            span: Span::new(start, self.pos),
        })
    }

    /// Parses `( ... )` after an optional name: a struct if the first entry is `ident:`, else a tuple.
    fn parenthesized(&mut self, name: Option<Name>) -> Result<Value, SyntaxError> {
        self.expect('(', None)?;
        self.skip_trivia()?;
        if self.peek() == Some(')') {
            self.bump();
            return Ok(match name {
                None => Value::Unit,
                Some(name) => Value::Struct {
                    name: Some(name),
                    fields: Vec::new(),
                },
            });
        }
        if self.at_field() {
            let fields = self.comma_list(')', |p| {
                p.skip_trivia()?;
                if !p.at_field() {
                    return Err(p.error_here(
                        "expected a field `name: value`",
                        Some("inside `Kind(...)` every entry is `field: value`, separated by commas"),
                    ));
                }
                let key = p.ident();
                p.expect(':', None)?;
                let value = p.value()?;
                Ok((key, value))
            })?;
            Ok(Value::Struct { name, fields })
        } else {
            let items = self.comma_list(')', |p| p.value())?;
            Ok(Value::Tuple { name, items })
        }
    }

    /// True if the text ahead is `identifier :` (but not `::`).
    fn at_field(&self) -> bool {
        let rest = self.rest();
        let len: usize = rest
            .char_indices()
            .take_while(|(i, c)| c.is_alphanumeric() || *c == '_' || (*i == 0 && c.is_alphabetic()))
            .map(|(_, c)| c.len_utf8())
            .sum();
        if len == 0 || !rest.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return false;
        }
        let after = rest[len..].trim_start();
        after.starts_with(':') && !after.starts_with("::")
    }

    fn comma_list<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<Vec<T>, SyntaxError> {
        let open_pos = self.pos.saturating_sub(1);
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                None => {
                    return Err(self.error_at(
                        Span::new(open_pos, open_pos + 1),
                        format!("this bracket is never closed with `{close}`"),
                        Some("add the closing bracket, or look for a missing comma before it"),
                    ))
                }
                _ => {}
            }
            items.push(item(self)?);
            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                Some(c) => {
                    return Err(self.error_here(
                        format!("expected `,` or `{close}`, found `{c}`"),
                        Some("separate entries with commas"),
                    ))
                }
                None => {
                    return Err(self.error_at(
                        Span::new(open_pos, open_pos + 1),
                        format!("this bracket is never closed with `{close}`"),
                        Some("add the closing bracket"),
                    ))
                }
            }
        }
    }

    fn ident(&mut self) -> Name {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
        Name {
            text: self.src[start..self.pos].to_owned(),
            span: Span::new(start, self.pos),
        }
    }

    fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        while let Some(c) = self.peek() {
            let prev = self.src[..self.pos].chars().last();
            let exponent_sign = matches!(c, '-' | '+') && matches!(prev, Some('e' | 'E'));
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
                self.bump();
            } else {
                break;
            }
        }
        let text = &self.src[start..self.pos];
        let cleaned = text.replace('_', "");
        let digits = cleaned.trim_start_matches(['-', '+']);
        let valid = digits == "inf"
            || digits == "NaN"
            || (digits.starts_with("0x")
                && digits.len() > 2
                && digits[2..].chars().all(|c| c.is_ascii_hexdigit() || c == '_'))
            || is_decimal_literal(digits);
        if !valid {
            return Err(self.error_at(
                Span::new(start, self.pos),
                format!("`{text}` is not a number"),
                Some("write numbers like 42, -1.5 or 1e-3"),
            ));
        }
        Ok(cleaned)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error_at(
                    Span::new(start, start + 1),
                    "unterminated string",
                    Some("close the string with `\"`"),
                ));
            };
            match c {
                '"' => return Ok(out),
                '\\' => out.push(self.escape(start)?),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, string_start: usize) -> Result<char, SyntaxError> {
        let at = self.pos;
        let Some(c) = self.bump() else {
            return Err(self.error_at(Span::new(string_start, string_start + 1), "unterminated string", None));
        };
        Ok(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            '\\' => '\\',
            '"' => '"',
            '\'' => '\'',
            'u' => {
                let rest = self.rest();
                let close = rest.find('}');
                let code = match (rest.starts_with('{'), close) {
                    (true, Some(end)) => u32::from_str_radix(&rest[1..end], 16)
                        .ok()
                        .and_then(char::from_u32)
                        .map(|ch| (ch, end)),
                    _ => None,
                };
                match code {
                    Some((ch, end)) => {
                        self.pos += end + 1;
                        ch
                    }
                    None => {
                        return Err(self.error_at(
                            Span::new(at - 1, self.pos),
                            "invalid unicode escape",
                            Some("write unicode escapes as \\u{1F600}"),
                        ))
                    }
                }
            }
            other => {
                return Err(self.error_at(
                    Span::new(at - 1, self.pos),
                    format!("unknown escape `\\{other}`"),
                    Some("valid escapes are \\n \\t \\r \\0 \\\\ \\\" \\' \\u{...}"),
                ))
            }
        })
    }

    fn raw_string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        self.bump(); // r
        let mut hashes = 0;
        while self.peek() == Some('#') {
            hashes += 1;
            self.bump();
        }
        if self.bump() != Some('"') {
            return Err(self.error_at(
                Span::new(start, self.pos),
                "malformed raw string",
                Some("write raw strings as r\"...\" or r#\"...\"#"),
            ));
        }
        let terminator = format!("\"{}", "#".repeat(hashes));
        match self.rest().find(&terminator) {
            Some(end) => {
                let text = self.rest()[..end].to_owned();
                self.pos += end + terminator.len();
                Ok(text)
            }
            None => Err(self.error_at(Span::new(start, start + 1), "unterminated raw string", None)),
        }
    }

    fn char_literal(&mut self) -> Result<char, SyntaxError> {
        let start = self.pos;
        self.bump();
        let c = match self.bump() {
            Some('\\') => self.escape(start)?,
            Some(c) => c,
            None => return Err(self.error_at(Span::new(start, start + 1), "unterminated character", None)),
        };
        if self.bump() != Some('\'') {
            return Err(self.error_at(
                Span::new(start, self.pos),
                "a character literal holds exactly one character",
                Some("use double quotes for strings"),
            ));
        }
        Ok(c)
    }
}

/// `12`, `1.5`, `.5`, `1e-3`, `2.5E+4`.
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok =
        digits(int) && frac.is_none_or(digits) && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.trim_start_matches(['-', '+']);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_structs_maps_lists_and_keeps_spans() {
        let text = r#"Pipeline(name: "x", stages: { "a": Kind(inputs: ["b"], n: 1.10, on: true, mode: block) })"#;
        let node = parse(text).unwrap();
        let (_, stages) = node.field("stages").unwrap();
        let Value::Map(entries) = &stages.value else {
            panic!("not a map")
        };
        let (key, value) = &entries[0];
        assert_eq!(&text[key.span.start..key.span.end], "\"a\"");
        let (_, n) = value.field("n").unwrap();
        assert_eq!(n.value, Value::Number("1.10".into()));
        assert_eq!(&text[n.span.start..n.span.end], "1.10");
        let (_, mode) = value.field("mode").unwrap();
        assert_eq!(mode.value, Value::Ident("block".into()));
    }

    #[test]
    fn tuples_some_unit_and_comments() {
        let text = "/* a /* nested */ comment */ (Some(3), None, (), 'c', r#\"raw \"x\"\"#) // end";
        let node = parse(text).unwrap();
        let Value::Tuple { name: None, items } = node.value else {
            panic!()
        };
        assert!(matches!(&items[0].value, Value::Tuple { name: Some(n), .. } if n.text == "Some"));
        assert_eq!(items[1].value, Value::Ident("None".into()));
        assert_eq!(items[2].value, Value::Unit);
        assert_eq!(items[3].value, Value::Char('c'));
        assert_eq!(items[4].value, Value::String("raw \"x\"".into()));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let text = "Pipeline(name: \"x\" stages: {})";
        let err = parse(text).unwrap_err();
        assert_eq!(err.span.start, text.find("stages").unwrap());
        assert!(err.message.contains("expected `,`"), "{}", err.message);

        let err = parse("Pipeline(name: \"x\"").unwrap_err();
        assert_eq!(err.span.start, 8, "points at the unclosed bracket");

        let err = parse("(a: 1.2.3)").unwrap_err();
        assert!(err.message.contains("not a number"));
    }

    #[test]
    fn number_literals() {
        for ok in ["1", "-1", "1.5", ".5", "1e-3", "2.5E+4", "0x1F", "1_000"] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in ["1.2.3", "1e", "12abc", "-"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_ron_like_text(text in "[(){}\\[\\]:,\"a-z0-9 .#r'/*\\\\-]{0,120}") {
            let _ = parse(&text);
        }
    }
}
