//! Go's `time.ParseDuration` (`300ms`, `1.5h`, `2h45m`, `-1s`), for the
//! `wait` and `timeout` arguments of netexec's `/exit`.

/// Parses a Go duration into signed nanoseconds, `None` where Go fails.
pub(crate) fn parse_go(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None; // "." or a unit with no number
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None, // Go requires a unit on every number but a lone "0"
        };
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut value = whole.checked_mul(scale)?;
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            value += i128::from(digit - b'0') * place;
        }
        total = total.checked_add(value)?;
        rest = tail;
    }
    // Go's range is that of an i64 in nanoseconds.
    if total > i128::from(i64::MAX) {
        return None;
    }
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse_go;

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(parse_go("0"), Some(0));
        assert_eq!(parse_go("5s"), Some(5_000_000_000));
        assert_eq!(parse_go("300ms"), Some(300_000_000));
        assert_eq!(parse_go("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_go("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_go(".5s"), Some(500_000_000));
        assert_eq!(parse_go("1µs"), Some(1_000));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "5", "s", "1x", ".s", "-", "1s2", "9999999999h"] {
            assert_eq!(parse_go(bad), None, "{bad:?}");
        }
    }
}
