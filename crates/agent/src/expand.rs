//! `$(VAR)` expansion exactly as the kubelet does it
//! (`third_party/forked/golang/expansion/expand.go`): `$(NAME)` is replaced
//! by the variable's value, `$$` is an escaped `$`, a reference to an
//! unknown variable and an unterminated `$(` are left as they are.
//!
//! One deliberate difference: after a `$` that starts no reference, Go
//! copies the *byte* that follows as a rune (turning a multi-byte character
//! into mojibake); we copy the whole character.

/// Expands `$(VAR)` references in `input` with `lookup`; a name `lookup`
/// does not know stays as `$(name)`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A trailing `$` is copied as is.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after[1..].find(')') {
                Some(close) => {
                    let name = &after[1..1 + close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 2..];
                }
                // Incomplete reference: `$(` is copied and scanning goes on
                // after it, so a later `$` still counts.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// The table of the kubelet's `expand_test.go` `TestExpand` (the cases
    /// that do not depend on Go's byte-as-rune quirk).
    #[test]
    fn kubelet_expand_cases() {
        let vars = with(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let cases: &[(&str, &str)] = &[
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("___$(VAR_C)", "___C"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            // A value is not expanded again.
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_A)_$(VAR_DNE)", "A_$(VAR_DNE)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A)$(VAR_B", "A$(VAR_B"),
            ("$(VAR_A)$(", "A$("),
            ("$VAR_A", "$VAR_A"),
            ("$$$", "$$"),
            ("$$$$", "$$"),
            ("$$$$$$$$", "$$$$"),
            ("$$(foo)", "$(foo)"),
            ("$$$(VAR_A)", "$A"),
            ("$", "$"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$$)", "$)"),
            ("$(VAR_A)$", "A$"),
            ("hello world", "hello world"),
            ("", ""),
            ("$(VAR_A)$(VAR_A)$(VAR_A)", "AAA"),
            ("$(VAR_(A)", "$(VAR_(A)"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars), *want, "input {input:?}");
        }
    }

    #[test]
    fn unicode_is_preserved() {
        let vars = with(&[("X", "ü")]);
        assert_eq!(expand("é$é$(X)", &vars), "é$éü");
    }
}
