//! Business calendars: which days a rate is expected to change on, so that a weekend or a
//! TARGET holiday is not mistaken for a feed that stopped.
//!
//! Days are UTC calendar days. The TARGET calendar is the euro area's payment system's, on
//! which the ECB publishes its reference rates: closed on weekends, 1 January, 25 and 26
//! December always; Good Friday, Easter Monday and 1 May from 2000; 31 December in 1999–2001.
//! Checked against the ECB's whole history (examples/data): every TARGET business day from
//! 1999-01-04 has a fixing, and the only fixings on closing days are Good Friday and Easter
//! Monday 1999, before those closures began.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Which days count when measuring how long a feed has been quiet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Calendar {
    /// TARGET business days (the ECB's; also right for FX feeds quiet at weekends).
    #[default]
    Target,
    /// Every day, around the clock (a feed that never rests).
    Continuous,
}

/// Easter Sunday of `year` (Gregorian; the anonymous algorithm).
fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("Easter is a real date")
}

impl Calendar {
    /// Whether a rate is expected on `day`.
    pub fn is_business_day(self, day: NaiveDate) -> bool {
        match self {
            Calendar::Continuous => true,
            Calendar::Target => {
                if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                    return false;
                }
                let year = day.year();
                match (day.month(), day.day()) {
                    (1, 1) | (12, 25) | (12, 26) => return false,
                    (5, 1) if year >= 2000 => return false,
                    (12, 31) if (1999..=2001).contains(&year) => return false,
                    _ => {}
                }
                let easter = easter(year);
                let closed = year >= 2000 && (day == easter - Duration::days(2) || day == easter + Duration::days(1));
                !closed
            }
        }
    }

    /// The instant at which `age` of business time has passed since `since` (time on closed
    /// days does not count). `None` past the representable range.
    pub fn deadline(self, since: DateTime<Utc>, age: Duration) -> Option<DateTime<Utc>> {
        if self == Calendar::Continuous {
            return since.checked_add_signed(age);
        }
        let mut at = since;
        let mut left = age;
        // A year of closed days at most lies between two business days; the bound only
        // guards against a calendar bug looping for ever.
        for _ in 0..(age.num_days() + 400) {
            let day = at.date_naive();
            let next_midnight = day.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc();
            if self.is_business_day(day) {
                let open = next_midnight - at;
                if left < open {
                    return Some(at + left);
                }
                left -= open;
            }
            at = next_midnight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn target_closes_on_weekends_and_its_holidays() {
        let c = Calendar::Target;
        assert!(c.is_business_day(day("2024-04-10")));
        assert!(!c.is_business_day(day("2024-04-13")), "Saturday");
        assert!(!c.is_business_day(day("2024-03-29")), "Good Friday 2024");
        assert!(!c.is_business_day(day("2024-04-01")), "Easter Monday 2024");
        assert!(!c.is_business_day(day("2025-05-01")));
        assert!(!c.is_business_day(day("2025-12-26")));
        assert!(c.is_business_day(day("1999-04-02")), "Good Friday 1999 was open");
        assert!(!c.is_business_day(day("2001-12-31")));
        assert!(c.is_business_day(day("2002-12-31")));
        assert_eq!(easter(2025), day("2025-04-20"));
        assert_eq!(easter(2000), day("2000-04-23"));
    }

    #[test]
    fn a_deadline_skips_closed_days() {
        let c = Calendar::Target;
        let day = Duration::days(1);
        // Tuesday → Wednesday.
        assert_eq!(
            c.deadline(at("2024-04-09T00:00:00Z"), day),
            Some(at("2024-04-10T00:00:00Z"))
        );
        // Friday → Monday: the weekend does not count.
        assert_eq!(
            c.deadline(at("2024-04-12T00:00:00Z"), day),
            Some(at("2024-04-15T00:00:00Z"))
        );
        // Thursday before Easter 2024 → Tuesday after it.
        assert_eq!(
            c.deadline(at("2024-03-28T00:00:00Z"), day),
            Some(at("2024-04-02T00:00:00Z"))
        );
        // Partial days: Friday 18:00 plus 8 h is Monday 02:00.
        assert_eq!(
            c.deadline(at("2024-04-12T18:00:00Z"), Duration::hours(8)),
            Some(at("2024-04-15T02:00:00Z"))
        );
        assert_eq!(
            Calendar::Continuous.deadline(at("2024-04-12T18:00:00Z"), Duration::hours(8)),
            Some(at("2024-04-13T02:00:00Z"))
        );
        // From a closed day, counting starts at the next business day.
        assert_eq!(
            c.deadline(at("2024-04-13T12:00:00Z"), day),
            Some(at("2024-04-16T00:00:00Z"))
        );
    }

    /// The calendar against the ECB's whole history: no business day without a fixing
    /// (a fixing a day late would be "stale" after one business day).
    #[test]
    fn every_ecb_fixing_follows_the_last_within_one_target_day() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ecb-eurofxref-hist.csv");
        let text = std::fs::read_to_string(path).unwrap();
        let mut days: Vec<NaiveDate> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').next()?.parse().ok())
            .collect();
        days.sort();
        assert!(days.len() > 7000);
        let late: Vec<_> = days
            .windows(2)
            .filter(|w| {
                let since = w[0].and_hms_opt(0, 0, 0).unwrap().and_utc();
                let next = w[1].and_hms_opt(0, 0, 0).unwrap().and_utc();
                Calendar::Target.deadline(since, Duration::days(1)).unwrap() < next
            })
            .collect();
        assert!(late.is_empty(), "fixings later than one TARGET day: {late:?}");
    }
}
