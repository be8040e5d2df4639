//! `${VAR}` and `${VAR:-default}` interpolation, keeping a map back to the original text.
//!
//! Substitution happens on the raw text before parsing (so a variable can hold
//! an address, a path or a number), and every later error position is mapped
//! back through [`SourceMap`] so the user sees the line and column of *their*
//! file, not of the substituted one. `$${` writes a literal `${`. A default may
//! itself be a reference, `${FXFLOW_INSTANCE:-${HOSTNAME:-}}`, as in the shell.

use crate::ron::value::Span;

/// One substitution: `original` in the file became `output` in the text we parse.
#[derive(Clone, Debug)]
struct Edit {
    original: Span,
    output: Span,
}

/// Maps byte offsets in the interpolated text back to the original file.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    edits: Vec<Edit>,
}

impl SourceMap {
    /// The original offset of an offset in the interpolated text. Offsets inside
    /// a substituted value map to the start of the `${...}` that produced it.
    pub fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for edit in &self.edits {
            if offset < edit.output.start {
                break;
            }
            if offset < edit.output.end {
                return edit.original.start;
            }
            shift = edit.original.end as isize - edit.output.end as isize;
        }
        (offset as isize + shift).max(0) as usize
    }

    pub fn original_span(&self, span: Span) -> Span {
        let start = self.original_offset(span.start);
        Span::new(start, self.original_offset(span.end).max(start))
    }
}

/// A `${VAR}` without a value and without a default.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingVar {
    pub name: String,
    /// Where `${VAR}` stands in the original text.
    pub span: Span,
}

/// A `${` that is never closed or has an invalid name.
#[derive(Clone, Debug, PartialEq)]
pub struct BadReference {
    pub span: Span,
    pub message: String,
}

pub struct Interpolated {
    pub text: String,
    pub map: SourceMap,
    pub missing: Vec<MissingVar>,
    pub malformed: Vec<BadReference>,
}

/// Substitute variables using `lookup` (the process environment in production).
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Interpolated {
    let mut out = String::with_capacity(text.len());
    let mut map = SourceMap::default();
    let mut missing = Vec::new();
    let mut malformed = Vec::new();
    let mut pos = 0;
    let mut scan = Scanner::default();
    while let Some(found) = next_reference(text, pos, &mut scan) {
        let at = found;
        out.push_str(&text[pos..at]);
        let rest = &text[at..];
        if rest.starts_with("$${") {
            let output_start = out.len();
            out.push_str("${");
            map.edits.push(Edit {
                original: Span::new(at, at + 3),
                output: Span::new(output_start, out.len()),
            });
            pos = at + 3;
            continue;
        }
        let Some(close) = closing_brace(rest) else {
            malformed.push(BadReference {
                span: Span::new(at, at + 2),
                message: "`${` is never closed with `}`".into(),
            });
            out.push_str(rest);
            pos = text.len();
            break;
        };
        let inner = &rest[2..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let original = Span::new(at, at + close + 1);
        let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let value = if !valid_name {
            malformed.push(BadReference {
                span: original,
                message: format!("`${{{inner}}}` is not a valid variable reference"),
            });
            String::new()
        } else {
            // As in the shell: `${VAR:-default}` takes the default when VAR is unset *or empty*.
            let default = default.map(|d| expand_default(d, &lookup));
            let value = match (lookup(name), default) {
                (Some(value), Some(default)) if value.is_empty() => Some(default),
                (Some(value), _) => Some(value),
                (None, default) => default,
            };
            match value {
                Some(value) => value,
                None => {
                    missing.push(MissingVar {
                        name: name.to_owned(),
                        span: original,
                    });
                    String::new()
                }
            }
        };
        let output_start = out.len();
        // Values land inside RON string literals most of the time; escape what would end one.
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        map.edits.push(Edit {
            original,
            output: Span::new(output_start, out.len()),
        });
        pos = at + close + 1;
        scan.resume_at(pos);
    }
    out.push_str(&text[pos..]);
    Interpolated {
        text: out,
        map,
        missing,
        malformed,
    }
}

/// The `}` that closes the `${` at the start of `rest`, past any nested `${...}`.
fn closing_brace(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        if bytes[i..].starts_with(b"${") {
            depth += 1;
            i += 2;
            continue;
        }
        if bytes[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// A default's text with its own references replaced (unset and without a default: empty),
/// unescaped: the outer reference escapes the whole value once.
fn expand_default(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let Some(close) = closing_brace(&rest[at..]) else {
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = &rest[at + 2..at + close];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        match lookup(name) {
            Some(value) if !value.is_empty() => out.push_str(&value),
            _ => out.push_str(&expand_default(default, lookup)),
        }
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Where the scanner is: references count in code and strings, not in comments.
#[derive(Default)]
struct Scanner {
    at: usize,
    in_string: bool,
}

impl Scanner {
    fn resume_at(&mut self, at: usize) {
        self.at = at;
    }
}

/// The byte offset of the next `${` or `$${` outside comments, at or after `from`.
fn next_reference(text: &str, from: usize, scan: &mut Scanner) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = scan.at.max(from);
    while i < bytes.len() {
        let rest = &bytes[i..];
        if scan.in_string {
            match rest[0] {
                b'\\' => i += 2,
                b'"' => {
                    scan.in_string = false;
                    i += 1;
                }
                b'$' if rest.starts_with(b"${") || rest.starts_with(b"$${") => {
                    scan.at = i;
                    return Some(i);
                }
                _ => i += 1,
            }
            continue;
        }
        if rest.starts_with(b"//") {
            i += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            i += 2 + rest[2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(rest.len(), |p| p + 2);
        } else if rest[0] == b'"' {
            scan.in_string = true;
            i += 1;
        } else if rest.starts_with(b"${") || rest.starts_with(b"$${") {
            scan.at = i;
            return Some(i);
        } else {
            i += 1;
        }
    }
    scan.at = bytes.len();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let r = interpolate(r#"a: "${HOST}:${PORT:-5432}", b: "$${HOST}", c: "$5""#, env);
        assert_eq!(r.text, r#"a: "db.internal:5432", b: "${HOST}", c: "$5""#);
        assert!(r.missing.is_empty());
    }

    #[test]
    fn reports_missing_and_maps_positions_back() {
        let text = "x: \"${HOST}\", y: \"${NOPE}\", z: 1";
        let r = interpolate(text, env);
        assert_eq!(
            r.missing,
            vec![MissingVar {
                name: "NOPE".into(),
                span: Span::new(18, 25)
            }]
        );
        let z_out = r.text.find("z:").unwrap();
        assert_eq!(r.map.original_offset(z_out), text.find("z:").unwrap());
        let inside_value = r.text.find("db.internal").unwrap() + 3;
        assert_eq!(r.map.original_offset(inside_value), text.find("${HOST}").unwrap());
    }

    #[test]
    fn malformed_references() {
        let r = interpolate("a: \"${BAD NAME}\", b: \"${OPEN", env);
        assert_eq!(r.malformed.len(), 2);
    }

    #[test]
    fn comments_are_not_interpolated_but_strings_and_code_are() {
        let text = "// ${IN_COMMENT}\n/* ${ALSO} */ a: \"http://${HOST}/x\", b: ${PORT:-1}";
        let r = interpolate(text, env);
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        assert_eq!(
            r.text,
            "// ${IN_COMMENT}\n/* ${ALSO} */ a: \"http://db.internal/x\", b: 1"
        );
    }

    #[test]
    fn escapes_quotes_in_values() {
        let r = interpolate("\"${Q}\"", |_| Some("say \"hi\"".into()));
        assert_eq!(r.text, "\"say \\\"hi\\\"\"");
    }

    #[test]
    fn a_default_may_be_another_reference() {
        let out = interpolate(
            r#"a: "${NOPE:-${HOST}}", b: "${HOST:-${NOPE}}", c: "${NOPE:-${EMPTY:-${NOPE:-x}}-y}", d: "${NOPE:-${NOPE:-}}""#,
            env,
        );
        assert_eq!(out.text, r#"a: "db.internal", b: "db.internal", c: "x-y", d: """#);
        assert!(out.missing.is_empty() && out.malformed.is_empty());
        // Positions after a nested reference still map back to the original text.
        let text = r#"x: "${NOPE:-${HOST}}", y: ${MISSING}"#;
        let out = interpolate(text, env);
        assert_eq!(out.missing[0].span.start, text.find("${MISSING}").unwrap());
    }

    #[test]
    fn an_empty_variable_takes_the_default_as_in_the_shell() {
        let env = |name: &str| (name == "EMPTY").then(String::new);
        let out = interpolate(r#"a: "${EMPTY:-x}", b: "${EMPTY}""#, env);
        assert_eq!(out.text, r#"a: "x", b: """#);
        assert!(out.missing.is_empty());
    }
}
