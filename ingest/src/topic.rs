//! MQTT topic filters with `+` (one level) and `#` (the rest), as in MQTT 3.1.1 §4.7.

/// Does `topic` match `filter`? Topics starting with `$` only match filters that name
/// that first level literally.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is `filter` a well-formed filter (`#` only last and alone in its level, `+` alone)?
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i + 1 == levels.len(),
        "+" => true,
        l => !l.contains('#') && !l.contains('+'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("tele/+/SENSOR", "tele/plug1/SENSOR"));
        assert!(!matches("tele/+/SENSOR", "tele/plug1/STATE"));
        assert!(!matches("tele/+/SENSOR", "tele/a/b/SENSOR"));
        assert!(matches("shellies/#", "shellies/em3/emeter/0/power"));
        assert!(matches("shellies/#", "shellies"));
        assert!(matches("wattdb/+", "wattdb/electric"));
        assert!(!matches("wattdb/+", "wattdb"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(valid_filter("a/+/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b+"));
    }
}
