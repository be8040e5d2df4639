//! What a test run prints: text for people, JUnit XML for CI.

use super::run::CaseOutcome;

/// `FILE:LINE:COL: FAIL case — output: message`, with expected and actual events.
pub fn text(file: &str, outcomes: &[CaseOutcome]) -> String {
    let mut out = String::new();
    for case in outcomes {
        if case.passed() {
            out.push_str(&format!(
                "{file}:{}:{}: ok   {} ({} ms)\n",
                case.line,
                case.column,
                case.name,
                case.elapsed.as_millis()
            ));
            continue;
        }
        for failure in &case.failures {
            let output = if failure.output.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", failure.output)
            };
            out.push_str(&format!(
                "{file}:{}:{}: FAIL {} — {output}{}\n",
                failure.line, failure.column, case.name, failure.message
            ));
            if let Some(expected) = &failure.expected {
                out.push_str(&indent("expected", expected));
            }
            if let Some(actual) = &failure.actual {
                out.push_str(&indent("actual", actual));
            }
        }
    }
    out
}

fn indent(label: &str, body: &str) -> String {
    let mut out = String::new();
    for (i, line) in body.lines().enumerate() {
        let head = if i == 0 { format!("{label}:") } else { String::new() };
        out.push_str(&format!("  {head:<10}{line}\n"));
    }
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test suite per file, a test case per case, a failure per failed assertion.
pub fn junit(files: &[(String, Vec<CaseOutcome>)]) -> String {
    let tests: usize = files.iter().map(|(_, c)| c.len()).sum();
    let failed: usize = files
        .iter()
        .map(|(_, c)| c.iter().filter(|c| !c.passed()).count())
        .sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pipeline tests\" tests=\"{tests}\" failures=\"{failed}\">\n"
    );
    for (file, cases) in files {
        let failures = cases.iter().filter(|c| !c.passed()).count();
        let seconds: f64 = cases.iter().map(|c| c.elapsed.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">\n",
            xml(file),
            cases.len()
        ));
        for case in cases {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml(&case.name),
                xml(file),
                case.elapsed.as_secs_f64()
            ));
            if case.passed() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for failure in &case.failures {
                let mut body = format!("{file}:{}:{}", failure.line, failure.column);
                if let Some(expected) = &failure.expected {
                    body.push_str(&format!("\nexpected: {expected}"));
                }
                if let Some(actual) = &failure.actual {
                    body.push_str(&format!("\nactual: {actual}"));
                }
                out.push_str(&format!(
                    "      <failure message=\"{}\">{}</failure>\n",
                    xml(&format!("{}{}", prefix(&failure.output), failure.message)),
                    xml(&body)
                ));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn prefix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("{output}: ")
    }
}
