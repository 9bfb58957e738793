//! TOML datetimes as Unix seconds, and the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use toml::value::{Datetime, Offset};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

/// The instant a TOML offset datetime (`2027-01-01T00:00:00Z`) names, in Unix seconds.
/// A local datetime or a bare date is refused: an expiry must not depend on the node's
/// time zone.
pub(crate) fn unix_seconds(datetime: &Datetime) -> Result<i64, String> {
    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err(format!(
            "`{datetime}` needs a date, a time and an offset, such as `2027-01-01T00:00:00Z`"
        ));
    };
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let seconds = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    let offset_minutes = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    Ok(seconds - offset_minutes * 60)
}

/// The instant `text` names (`2027-01-01T00:00:00Z`, an RFC 3339 datetime with an offset),
/// in Unix seconds.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let datetime: Datetime = text
        .parse()
        .map_err(|_| format!("`{text}` is not a date and time, such as `2027-01-01T00:00:00Z`"))?;
    unix_seconds(&datetime)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Result<i64, String> {
        unix_seconds(&text.parse::<Datetime>().unwrap())
    }

    #[test]
    fn offset_datetimes_are_unix_seconds() {
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(at("2000-03-01T00:00:00Z"), Ok(951_868_800));
        assert_eq!(at("2027-01-01T00:00:00Z"), Ok(1_798_761_600));
        assert_eq!(at("2027-01-01T02:00:00+02:00"), Ok(1_798_761_600));
        assert_eq!(at("1969-12-31T23:59:59Z"), Ok(-1));
    }

    #[test]
    fn a_datetime_without_an_offset_is_refused() {
        assert!(at("2027-01-01T00:00:00").unwrap_err().contains("offset"));
        assert!(at("2027-01-01").is_err());
    }
}
