//! How the message list reads (Slack's habits), as a pure function tested without a browser:
//! consecutive messages by one author a few minutes apart share one header, and a divider
//! names each (local) day.

use crate::protocol::Message;

/// A message at most this long (in milliseconds) after the one before it, by the same author
/// on the same day, continues its group: five minutes.
pub const GROUP_GAP_MS: i64 = 5 * 60 * 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Where one message sits in the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    /// Whether it starts a group, showing its author, tag and time; the rest of a group
    /// shows just the body (the time on hover, and to screen readers).
    pub head: bool,
    /// The divider above it, on the first message of a day: "Today", "Yesterday" or a date.
    pub day: Option<String>,
}

/// The place of each of `messages` (oldest first). `offset_minutes` gives the reader's UTC
/// offset at an instant in milliseconds since 1970 (0 on the server: it renders UTC days);
/// `now_ms` decides which day is "Today".
///
/// Time is counted in plain integers (milliseconds, days since 1970) rather than with
/// chrono's calendar and duration types, to keep their code out of the browser's bundle.
pub fn places(
    messages: &[Message],
    offset_minutes: impl Fn(i64) -> i32,
    now_ms: i64,
) -> Vec<Place> {
    let local_day = |ms: i64| (ms + i64::from(offset_minutes(ms)) * 60_000).div_euclid(DAY_MS);
    let today = local_day(now_ms);
    let mut previous: Option<(&Message, i64, i64)> = None;
    messages
        .iter()
        .map(|message| {
            let at = message.sent_at.timestamp_millis();
            let day = local_day(at);
            let new_day = previous.is_none_or(|(_, _, d)| d != day);
            let head = new_day
                || previous.is_none_or(|(p, p_at, _)| {
                    p.author.id != message.author.id || at - p_at > GROUP_GAP_MS
                });
            previous = Some((message, at, day));
            Place {
                head,
                day: new_day.then(|| day_label(day, today)),
            }
        })
        .collect()
}

/// The name of a day (counted from 1970-01-01): "Today", "Yesterday", "Friday 20 November"
/// (this year) or "Friday 20 November 2025".
pub fn day_label(day: i64, today: i64) -> String {
    const WEEKDAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    if day == today {
        return "Today".into();
    }
    if day + 1 == today {
        return "Yesterday".into();
    }
    let (year, month, date) = crate::timestamp::civil_from_days(day);
    let weekday = WEEKDAYS[day.rem_euclid(7) as usize];
    let month = MONTHS[month as usize - 1];
    if year == crate::timestamp::civil_from_days(today).0 {
        format!("{weekday} {date} {month}")
    } else {
        format!("{weekday} {date} {month} {year}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, UserId};
    use chrono::{DateTime, Utc};

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ms(rfc3339: &str) -> i64 {
        at(rfc3339).timestamp_millis()
    }

    fn msg(seq: u64, author: &str, sent_at: &str) -> Message {
        let author = Author {
            id: UserId(author.into()),
            name: author.into(),
        };
        Message::sample(crate::protocol::ConversationId(1), seq, author, at(sent_at))
    }

    fn heads(places: &[Place]) -> Vec<bool> {
        places.iter().map(|p| p.head).collect()
    }

    fn days(places: &[Place]) -> Vec<Option<&str>> {
        places.iter().map(|p| p.day.as_deref()).collect()
    }

    const NOW: &str = "2026-11-22T15:00:00Z";

    #[test]
    fn one_author_within_five_minutes_shares_a_header() {
        let messages = [
            msg(1, "ada", "2026-11-22T10:00:00Z"),
            msg(2, "ada", "2026-11-22T10:04:59Z"),
            // Five minutes after the one before it: still the same group.
            msg(3, "ada", "2026-11-22T10:09:59Z"),
            // More than five minutes: a new header.
            msg(4, "ada", "2026-11-22T10:15:00Z"),
            // Someone else: a new header, and Ada's next one starts again.
            msg(5, "bob", "2026-11-22T10:15:10Z"),
            msg(6, "ada", "2026-11-22T10:15:20Z"),
            msg(7, "ada", "2026-11-22T10:15:30Z"),
        ];
        let places = places(&messages, |_| 0, ms(NOW));
        assert_eq!(
            heads(&places),
            [true, false, false, true, true, true, false]
        );
        assert_eq!(
            days(&places),
            [Some("Today"), None, None, None, None, None, None]
        );
    }

    #[test]
    fn a_divider_starts_each_day_and_breaks_a_group() {
        let messages = [
            msg(1, "ada", "2026-11-01T09:00:00Z"),
            msg(2, "ada", "2026-11-20T23:58:00Z"),
            // Two minutes later but the next day: a divider and a new header.
            msg(3, "ada", "2026-11-21T00:00:00Z"),
            msg(4, "ada", "2026-11-21T00:01:00Z"),
            msg(5, "bob", "2026-11-22T08:00:00Z"),
        ];
        let places = places(&messages, |_| 0, ms(NOW));
        assert_eq!(heads(&places), [true, true, true, false, true]);
        assert_eq!(
            days(&places),
            [
                Some("Sunday 1 November"),
                Some("Friday 20 November"),
                Some("Yesterday"),
                None,
                Some("Today"),
            ]
        );
    }

    #[test]
    fn days_are_the_readers_local_days() {
        // Four minutes apart across midnight at UTC+1 (23:58 and 00:02), the same evening at
        // UTC-5 (17:58 and 18:02).
        let messages = [
            msg(1, "ada", "2026-11-21T22:58:00Z"),
            msg(2, "ada", "2026-11-21T23:02:00Z"),
        ];
        let east = places(&messages, |_| 60, ms(NOW));
        assert_eq!(days(&east), [Some("Yesterday"), Some("Today")]);
        assert_eq!(heads(&east), [true, true]);
        let west = places(&messages, |_| -300, ms(NOW));
        assert_eq!(days(&west), [Some("Yesterday"), None]);
        assert_eq!(heads(&west), [true, false]);
    }

    /// The day number of a date, by chrono.
    fn day(y: i32, m: u32, d: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()
    }

    #[test]
    fn older_years_are_named() {
        let today = day(2026, 1, 2);
        let label = |y, m, d| day_label(day(y, m, d), today);
        assert_eq!(label(2026, 1, 2), "Today");
        assert_eq!(label(2026, 1, 1), "Yesterday");
        assert_eq!(label(2025, 12, 31), "Wednesday 31 December 2025");
        assert_eq!(label(2027, 3, 1), "Monday 1 March 2027");
    }

    #[test]
    fn no_messages_no_places() {
        assert!(places(&[], |_| 0, ms(NOW)).is_empty());
    }
}
