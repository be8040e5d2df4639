//! A firing as people read it: one line for a chat message or an email
//! subject, and the facts for a card or a message body. The chat formats of
//! the `Webhook` stage and the `Email` stage both write from here, so a
//! firing reads the same wherever it lands.

use chrono::SecondsFormat;

use super::alert::AlertFired;

/// What a person is told about one firing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `EUR/USD crossing up 1.10: 1.1003 (was 1.0998)`.
    pub headline: String,
    /// (name, value) pairs: pair, condition, value, previous, time, rule, source.
    pub facts: Vec<(&'static str, String)>,
}

impl Notice {
    pub fn of(fired: &AlertFired) -> Notice {
        let previous = fired.previous.map(|p| format!(" (was {p})")).unwrap_or_default();
        let at = fired.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let mut facts = vec![
            ("Pair", fired.pair.to_string()),
            ("Condition", fired.condition.to_string()),
            ("Value", fired.value.to_string()),
        ];
        if let Some(previous) = fired.previous {
            facts.push(("Previous", previous.to_string()));
        }
        facts.extend([
            ("Time", at),
            ("Rule", fired.rule_id.to_string()),
            ("Source", fired.source.to_string()),
        ]);
        Notice {
            headline: format!("{} {}: {}{previous}", fired.pair, fired.condition, fired.value),
            facts,
        }
    }

    /// The facts as `Name: value` lines.
    pub fn lines(&self) -> String {
        self.facts
            .iter()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::SourceName;

    #[test]
    fn a_notice_says_the_pair_condition_value_and_time() {
        let fired = AlertFired {
            rule_id: Arc::from("r1"),
            pair: "EUR/USD".parse().unwrap(),
            condition: Arc::from("crossing up 1.10"),
            value: dec!(1.1003),
            previous: Some(dec!(1.0998)),
            ts: "2024-03-01T14:00:00Z".parse().unwrap(),
            source: SourceName::intern("ecb").unwrap(),
            tenant: None,
        };
        let notice = Notice::of(&fired);
        assert_eq!(notice.headline, "EUR/USD crossing up 1.10: 1.1003 (was 1.0998)");
        assert_eq!(
            notice.lines(),
            "Pair: EUR/USD\nCondition: crossing up 1.10\nValue: 1.1003\nPrevious: 1.0998\n\
             Time: 2024-03-01T14:00:00Z\nRule: r1\nSource: ecb\n"
        );
    }
}
