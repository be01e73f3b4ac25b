//! Rule durations: `"30 seconds"`, `"15 minutes"`, `"4 hours"`, `"2 days"` (also `30s`,
//! `15min`, `4h`, `2d`, singular units) and `"0"`, in microseconds.

pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "0" {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{text}\" has no unit (seconds, minutes, hours, days)"))?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("\"{text}\" does not start with a number"))?;
    let unit_secs: i64 = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        other => {
            return Err(format!(
                "\"{text}\": unknown unit \"{other}\" (seconds, minutes, hours, days)"
            ));
        }
    };
    n.checked_mul(unit_secs)
        .and_then(|s| s.checked_mul(1_000_000))
        .ok_or_else(|| format!("\"{text}\" is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("30 seconds"), Ok(30_000_000));
        assert_eq!(parse_duration("15min"), Ok(900_000_000));
        assert_eq!(parse_duration(" 4 Hours "), Ok(14_400_000_000));
        assert_eq!(parse_duration("2 days"), Ok(172_800_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }
}
