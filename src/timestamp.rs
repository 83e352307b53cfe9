//! Timestamps on the wire: RFC 3339 in UTC, `2026-11-22T09:05:07.250Z`.
//!
//! Read and written here by hand, in the server and the browser alike: chrono's general
//! parser and formatter (every format it knows, time zones, RFC 2822) made up a fortieth of
//! the browser's bundle, for one format. chrono keeps the type and its arithmetic. The tests
//! hold both directions to chrono's own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month (1–12) and day of the month of a day counted from 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let date = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, date)
}

/// `2026-11-22T09:05:07.250Z`: UTC, milliseconds (chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)`), for `<time datetime=…>`.
pub fn format(at: &DateTime<Utc>) -> String {
    let ms = at.timestamp_millis();
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (s, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Reads an RFC 3339 date and time (`YYYY-MM-DDTHH:MM:SS`, an optional fraction of up to nine
/// digits (more are dropped), then `Z` or an offset `±HH:MM`), as chrono does; `None` if it is not one.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start {
            return None;
        }
        // Digits past nanoseconds are dropped, as chrono does.
        let kept = (end - start).min(9);
        nanos = num(start..start + kept)? * 10i64.pow((9 - kept) as u32);
        at = end;
    }
    let offset = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset * 60;
    DateTime::from_timestamp(secs, nanos as u32)
}

/// serde's `deserialize_with` for a timestamp.
pub fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
}

/// serde's `deserialize_with` for an optional timestamp.
pub fn read_optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, SecondsFormat};
    use proptest::prelude::*;

    #[test]
    fn civil_dates_match_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut d = chrono::NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        while d.year() < 2101 {
            let n = d.signed_duration_since(epoch).num_days();
            let ymd = (
                i64::from(d.year()),
                i64::from(d.month()),
                i64::from(d.day()),
            );
            assert_eq!(civil_from_days(n), ymd);
            assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), n);
            d = d.succ_opt().unwrap();
        }
    }

    proptest! {
        #[test]
        fn reads_and_writes_as_chrono_does(ms in -2_208_988_800_000i64..7_258_118_400_000, nanos in 0u32..1_000_000_000) {
            let at = DateTime::from_timestamp(ms.div_euclid(1000), nanos).unwrap();
            let millis = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap();
            prop_assert_eq!(format(&millis), millis.to_rfc3339_opts(SecondsFormat::Millis, true));
            for text in [
                at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                at.to_rfc3339_opts(SecondsFormat::Nanos, false),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                at.with_timezone(&chrono::FixedOffset::east_opt(-(5 * 3600 + 30 * 60)).unwrap()).to_rfc3339(),
                serde_json::to_value(at).unwrap().as_str().unwrap().to_string(),
            ] {
                let chrono = DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
                prop_assert_eq!(parse(&text), Some(chrono), "{}", text);
            }
        }
    }

    #[test]
    fn what_is_not_a_timestamp_is_refused() {
        for text in [
            "",
            "2026-11-22",
            "2026-11-22T09:05:07",
            "2026-11-22T09:05:07.Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T09:60:00Z",
            "2026-11-22T09:05:07Zjunk",
            "2026-11-22T09:05:07+0100",
            "2026-11-22T09:05:07+24:00",
            "２０２６-11-22T09:05:07Z",
            "+2026-11-22T09:05:07Z",
        ] {
            assert_eq!(parse(text), None, "{text}");
            assert!(
                DateTime::parse_from_rfc3339(text).is_err(),
                "chrono reads {text}"
            );
        }
        for text in [
            "2024-02-29T23:59:59.999999999-00:30",
            "2026-11-22T09:05:07.1234567890Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(parse(text), Some(chrono), "{text}");
        }
    }
}
