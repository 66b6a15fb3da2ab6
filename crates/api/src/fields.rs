//! Field selectors (`?fieldSelector=metadata.name=web,status.phase!=Failed`)
//! and the fields each kind supports, as the Kubernetes apiserver defines them.

use std::fmt;

/// Why a field selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term has no operator or a bad escape.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Syntax {
        /// The whole selector.
        selector: String,
        /// The term that could not be read.
        term: String,
    },
    /// The kind has no such selectable field.
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

/// How a term compares a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// The comparison.
    pub operator: Operator,
    /// The value compared against (unescaped).
    pub value: String,
}

/// A conjunction of field terms; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                e @ ('\\' | ',' | '=') => out.push(e),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

/// Finds the first unescaped operator in a term.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], Operator::NotEquals, &term[i + 2..]));
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], Operator::Equals, &term[i + 2..]));
            }
            b'=' => return Some((&term[..i], Operator::Equals, &term[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

impl FieldSelector {
    /// Parses `a=b,c!=d,e==f`; values may escape `\`, `,` and `=` with `\`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self::default());
        }
        for term in split_unescaped(input, ',') {
            if term.is_empty() {
                continue;
            }
            let syntax = || Error::Syntax {
                selector: input.to_string(),
                term: term.to_string(),
            };
            let (field, operator, value) = split_term(term).ok_or_else(syntax)?;
            let field = field.trim();
            if field.is_empty() {
                return Err(syntax());
            }
            let value = unescape(value).ok_or_else(syntax)?;
            requirements.push(Requirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// The terms in the order given.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field against what `kind` supports (see [`supported_fields`]).
    pub fn validate_for(&self, kind: &str) -> Result<(), Error> {
        let supported = supported_fields(kind);
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(Error::Unsupported(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether an object matches, given a lookup from field path to value
    /// (an absent field compares as the empty string, as in Kubernetes).
    pub fn matches(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let got = lookup(&r.field).unwrap_or_default();
            match r.operator {
                Operator::Equals => got == r.value,
                Operator::NotEquals => got != r.value,
            }
        })
    }

    /// Whether a JSON object matches (fields looked up with [`json_field`]).
    pub fn matches_json(&self, obj: &serde_json::Value) -> bool {
        self.matches(&|f| json_field(obj, f))
    }

    /// The value of `metadata.name` if the selector pins it (`metadata.name=x`),
    /// so a list can fetch one object instead of scanning.
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && r.operator == Operator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                Operator::Equals => "=",
                Operator::NotEquals => "!=",
            };
            write!(f, "{}{}{}", r.field, op, escape(&r.value))?;
        }
        Ok(())
    }
}

/// The selectable fields of a kind (by `kind`, e.g. `Pod`): `metadata.name`
/// and `metadata.namespace` everywhere, plus those Kubernetes adds per kind.
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["metadata.name", "metadata.namespace", "type"],
        "Namespace" => &["metadata.name", "status.phase"],
        "Node" => &["metadata.name", "spec.unschedulable"],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

/// Looks a dotted field path up in a JSON object, giving strings as they are
/// and numbers and booleans in their text form. Special cases follow
/// Kubernetes: `source` of an Event is `source.component`, `status.podIPs` is
/// the first pod IP, and `metadata.namespace` of a cluster-scoped object and
/// an unset `spec.hostNetwork` / `spec.unschedulable` read as `""`/`false`.
pub fn json_field(obj: &serde_json::Value, field: &str) -> Option<String> {
    let path = match field {
        "source" => "source.component",
        "status.podIPs" => "status.podIPs.0.ip",
        other => other,
    };
    // A closure, so that a missing step ends the walk, not the function:
    // the defaults below apply to absent fields.
    let walk = || {
        let mut cur = obj;
        for part in path.split('.') {
            cur = match cur {
                serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                other => other.get(part)?,
            };
        }
        match cur {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    walk().or(match field {
        "spec.hostNetwork" | "spec.unschedulable" => Some("false".into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches() {
        let s = FieldSelector::parse(
            "metadata.name=web,metadata.namespace!=kube-system,status.phase==Running",
        )
        .unwrap();
        assert_eq!(s.requirements().len(), 3);
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Running"}});
        assert!(s.matches_json(&pod));
        let other = json!({"metadata": {"name": "web", "namespace": "kube-system"}, "status": {"phase": "Running"}});
        assert!(!s.matches_json(&other));
        assert_eq!(s.exact_name(), Some("web"));
        assert!(FieldSelector::parse("").unwrap().matches(&|_| None));
    }

    #[test]
    fn escapes_round_trip() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.requirements()[0].value, "a,b=c");
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn bad_terms_and_unsupported_fields() {
        let e = FieldSelector::parse("metadata.name").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        let s = FieldSelector::parse("spec.clusterIP=1.2.3.4").unwrap();
        assert_eq!(
            s.validate_for("Service").unwrap_err().to_string(),
            "field label not supported: spec.clusterIP"
        );
        assert!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap()
                .validate_for("Pod")
                .is_ok()
        );
        assert!(
            FieldSelector::parse("type=Opaque")
                .unwrap()
                .validate_for("Secret")
                .is_ok()
        );
    }

    #[test]
    fn absent_fields_compare_as_empty() {
        let s = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(s.matches_json(&json!({"spec": {}})));
        let s = FieldSelector::parse("spec.nodeName!=").unwrap();
        assert!(s.matches_json(&json!({"spec": {"nodeName": "n1"}})));
        let s = FieldSelector::parse("status.podIPs=127.244.0.5").unwrap();
        assert!(s.matches_json(&json!({"status": {"podIPs": [{"ip": "127.244.0.5"}]}})));
    }
}
