//! What a pipeline file's problems look like: each at FILE:LINE:COL, with a hint.

use std::fmt;

use super::BoundAddress;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The one problem of a file that cannot be read (at 1:1).
    pub fn unreadable(file: &str, error: &std::io::Error, hint: Option<&str>) -> Self {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {error}"),
            hint: hint.map(str::to_owned),
        }])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

pub(super) fn address_conflict(bound: &BoundAddress, first: &BoundAddress) -> Diagnostic {
    Diagnostic {
        file: bound.file.clone(),
        line: bound.line,
        column: bound.column,
        message: format!(
            "{} listens on `{}`, which {} already uses",
            bound.owner, bound.address, first.owner
        ),
        hint: Some(format!(
            "first bound at {}:{}:{}; give each listener its own port",
            first.file, first.line, first.column
        )),
    }
}
