//! Object uids as the controllers' pod views hold them: a canonical UUID
//! (what every apiserver hands out) in 16 bytes inline, anything else as
//! the string it is.
//!
//! A boxed 36-character uid costs a 48-byte allocation and a 16-byte
//! pointer per pod and view; at 50,000 pods held by two controllers that
//! is about 6 MB for strings nobody reads but to copy them into a
//! `targetRef` or an ownership patch.

use std::fmt;

/// See the module docs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Uid {
    /// A UUID in its canonical lower-case hyphenated form.
    Uuid(u128),
    /// Any other string (tests, hand-written objects).
    Other(Box<str>),
}

impl Uid {
    /// The uid `s`.
    pub fn new(s: &str) -> Uid {
        parse_uuid(s).map_or_else(|| Uid::Other(Box::from(s)), Uid::Uuid)
    }
}

/// The value of a canonical UUID (8-4-4-4-12 lower-case hex digits): only
/// that form, so that formatting it gives back the very same string.
fn parse_uuid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Other(s) => f.write_str(s),
            Uid::Uuid(v) => {
                let hex = format!("{v:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
        }
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for Uid {
    fn eq(&self, other: &str) -> bool {
        match self {
            Uid::Other(s) => &**s == other,
            Uid::Uuid(v) => parse_uuid(other) == Some(*v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuids_are_held_inline_and_come_back_as_written() {
        let s = "0d5c4e6a-a966-4189-a9a2-09b51800c50a";
        let uid = Uid::new(s);
        assert!(matches!(uid, Uid::Uuid(_)));
        assert_eq!(uid.to_string(), s);
        assert!(uid == *s);
        for other in [
            "uid-web-7",
            "",
            "0D5C4E6A-A966-4189-A9A2-09B51800C50A",
            "0d5c4e6a-a966-4189-a9a2_09b51800c50a",
        ] {
            let uid = Uid::new(other);
            assert!(matches!(uid, Uid::Other(_)), "{other}");
            assert_eq!(uid.to_string(), other);
            assert!(uid == *other);
        }
        assert!(Uid::new(s) != *"0d5c4e6a-a966-4189-a9a2-09b51800c50b");
    }

    proptest! {
        #[test]
        fn every_string_round_trips(s in "[0-9a-f-]{0,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            prop_assert_eq!(Uid::new(&s).to_string(), s);
        }
    }
}
