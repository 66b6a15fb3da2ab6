//! Label selectors: the string syntax of `?labelSelector=` and `kubectl -l`,
//! `metav1.LabelSelector` objects, and a Service's plain selector map.
//!
//! A [`Selector`] keeps its requirements sorted by key (as Kubernetes does), so
//! its `Display` form is canonical and parses back to an equal selector.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::intern::intern;
use crate::names;

/// Read access to a set of labels, so a selector matches a plain map and a
/// compact [`LabelSet`] alike.
pub trait Labels {
    /// The value of label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// An immutable label set stored compactly: the pairs sorted by key in one
/// boxed slice. Caches that hold the labels of every object in a cluster
/// use this instead of a `BTreeMap`, whose smallest node is about half a
/// kilobyte however few labels an object has. Keys and values are
/// [interned](crate::intern): the pods of one workload share one copy of
/// each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSet(Box<[(Arc<str>, Arc<str>)]>);

impl LabelSet {
    /// Builds a set from pairs; of duplicate keys the last one wins, as in a
    /// JSON object.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> LabelSet {
        let mut v: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .map(|(k, v)| (intern(k.as_ref()), intern(v.as_ref())))
            .collect();
        // Stable, so among equal keys the last stays last; dedup keeps the
        // first of a run, hence the reversal around it.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.reverse();
        v.dedup_by(|a, b| a.0 == b.0);
        v.reverse();
        LabelSet(v.into_boxed_slice())
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The pairs as the shared strings they are, sorted by key (for
    /// indexes keyed by them, which then need no copies).
    pub fn pairs(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.0
    }

    /// Whether every pair of `selector` is among these labels (an
    /// equality-based selector, such as a Service's, held as a set).
    pub fn contains_all(&self, selector: &LabelSet) -> bool {
        selector.iter().all(|(k, v)| self.label(k) == Some(v))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Labels for LabelSet {
    fn label(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }
}

impl From<&BTreeMap<String, String>> for LabelSet {
    fn from(map: &BTreeMap<String, String>) -> LabelSet {
        LabelSet::from_pairs(map)
    }
}

/// Why a selector could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string does not follow the selector grammar.
    #[error("unable to parse requirement: {message} at position {position}")]
    Syntax {
        /// Byte offset in the selector string.
        position: usize,
        /// What was expected or found.
        message: String,
    },
    /// A key is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Kubernetes' message for it.
        reason: String,
    },
    /// A value is not a valid label value.
    #[error("invalid label value: {value:?}: {reason}")]
    InvalidValue {
        /// The value.
        value: String,
        /// Kubernetes' message for it.
        reason: String,
    },
    /// `in`/`notin` with no values.
    #[error(
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    )]
    EmptyValues {
        /// The key the set belongs to.
        key: String,
    },
    /// `Exists`/`DoesNotExist` given values.
    #[error(
        "values: Invalid value: {key:?}: values set must be empty for exists and does not exist"
    )]
    ValuesNotAllowed {
        /// The key.
        key: String,
    },
    /// A matchExpressions operator Kubernetes does not know.
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator {
        /// The operator as given.
        operator: String,
    },
}

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value` (also written `key==value`).
    Equals,
    /// `key!=value`: the label is absent or differs.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: the label is absent or not in the set.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
}

/// One condition on one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the values and their number
    /// against the operator as Kubernetes' `NewRequirement` does.
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, ParseError> {
        if let Some(reason) = names::is_qualified_name(key).into_iter().next() {
            return Err(ParseError::InvalidKey {
                key: key.to_string(),
                reason,
            });
        }
        let values: BTreeSet<String> = values.into_iter().collect();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(ParseError::EmptyValues {
                    key: key.to_string(),
                });
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(ParseError::Syntax {
                    position: 0,
                    message: "exact-match compatibility requires one single value".into(),
                });
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(ParseError::ValuesNotAllowed {
                    key: key.to_string(),
                });
            }
            _ => {}
        }
        for v in &values {
            if let Some(reason) = names::is_valid_label_value(v).into_iter().next() {
                return Err(ParseError::InvalidValue {
                    value: v.clone(),
                    reason,
                });
            }
        }
        Ok(Self {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (one for equality, at least one for sets, none otherwise).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let got = labels.label(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => got.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => got.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Builds a selector from requirements (sorted by key, stably).
    pub fn new(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Equality requirements from a plain map, as a Service's `spec.selector`.
    /// An empty map gives the selector that matches everything; a Service
    /// without a selector selects no Pods, which callers decide before this.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, ParseError> {
        let reqs = map
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::Equals, [v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(reqs))
    }

    /// A `metav1.LabelSelector` (matchLabels and matchExpressions with
    /// In/NotIn/Exists/DoesNotExist).
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Self, ParseError> {
        let mut reqs = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            reqs.push(Requirement::new(k, Operator::Equals, [v.clone()])?);
        }
        for e in ls.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(ParseError::UnknownOperator {
                        operator: other.to_string(),
                    });
                }
            };
            reqs.push(Requirement::new(
                &e.key,
                op,
                e.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(Self::new(reqs))
    }

    /// Parses the label-selector string syntax: comma-separated `a=b`,
    /// `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`; whitespace
    /// between tokens is ignored; the empty string matches everything.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let tokens = lex(input)?;
        Parser {
            tokens,
            pos: 0,
            input_len: input.len(),
        }
        .parse()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "end of string".into(),
        Some(Tok::Ident(s)) => format!("'{s}'"),
        Some(Tok::Not) => "'!'".into(),
        Some(Tok::Eq) => "'='".into(),
        Some(Tok::DoubleEq) => "'=='".into(),
        Some(Tok::NotEq) => "'!='".into(),
        Some(Tok::In) => "'in'".into(),
        Some(Tok::NotIn) => "'notin'".into(),
        Some(Tok::Open) => "'('".into(),
        Some(Tok::Close) => "')'".into(),
        Some(Tok::Comma) => "','".into(),
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>')
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, c)| c);
            let tok = match (c, next) {
                ('!', Some('=')) => {
                    chars.next();
                    Tok::NotEq
                }
                ('=', Some('=')) => {
                    chars.next();
                    Tok::DoubleEq
                }
                ('!', _) => Tok::Not,
                ('=', _) => Tok::Eq,
                (',', _) => Tok::Comma,
                ('(', _) => Tok::Open,
                (')', _) => Tok::Close,
                _ => {
                    return Err(ParseError::Syntax {
                        position: i,
                        message: format!("unsupported operator '{c}'"),
                    });
                }
            };
            out.push((i, tok));
            continue;
        }
        let start = i;
        let mut word = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        let tok = match word.as_str() {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident(word),
        };
        out.push((start, tok));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    input_len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or(self.input_len)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError::Syntax {
            position: self.position(),
            message: format!("found {}, expected: {expected}", describe(self.peek())),
        }
    }

    fn parse(mut self) -> Result<Selector, ParseError> {
        let mut reqs = Vec::new();
        if self.tokens.is_empty() {
            return Ok(Selector::everything());
        }
        loop {
            reqs.push(self.requirement()?);
            match self.peek() {
                None => break,
                Some(Tok::Comma) => {
                    self.next();
                }
                Some(_) => return Err(self.error("',' or end of string")),
            }
        }
        Ok(Selector::new(reqs))
    }

    /// A value where one is expected: there `in` and `notin` are plain words.
    fn value_word(&mut self) -> Option<String> {
        let v = match self.peek()? {
            Tok::Ident(v) => v.clone(),
            Tok::In => "in".to_string(),
            Tok::NotIn => "notin".to_string(),
            _ => return None,
        };
        self.next();
        Some(v)
    }

    fn key(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Ident(k)) => {
                let k = k.clone();
                self.next();
                Ok(k)
            }
            _ => Err(self.error("identifier")),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, ParseError> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            let key = self.key()?;
            return Requirement::new(&key, Operator::DoesNotExist, []);
        }
        let key = self.key()?;
        let op = match self.peek() {
            None | Some(Tok::Comma) => return Requirement::new(&key, Operator::Exists, []),
            Some(Tok::Eq | Tok::DoubleEq) => Operator::Equals,
            Some(Tok::NotEq) => Operator::NotEquals,
            Some(Tok::In) => Operator::In,
            Some(Tok::NotIn) => Operator::NotIn,
            Some(_) => return Err(self.error("'=', '!=', '==', 'in', 'notin'")),
        };
        self.next();
        let values = match op {
            Operator::Equals | Operator::NotEquals => {
                // `a=` selects the empty value.
                match self.value_word() {
                    Some(v) => vec![v],
                    None if matches!(self.peek(), None | Some(Tok::Comma)) => vec![String::new()],
                    None => return Err(self.error("identifier")),
                }
            }
            _ => self.value_set()?,
        };
        Requirement::new(&key, op, values)
    }

    fn value_set(&mut self) -> Result<Vec<String>, ParseError> {
        if self.peek() != Some(&Tok::Open) {
            return Err(self.error("'('"));
        }
        self.next();
        let mut values = Vec::new();
        if self.peek() == Some(&Tok::Close) {
            // Kubernetes reads `()` as the set holding the empty value.
            self.next();
            return Ok(vec![String::new()]);
        }
        loop {
            match self.value_word() {
                Some(v) => values.push(v),
                None if matches!(self.peek(), Some(Tok::Comma | Tok::Close)) => {
                    values.push(String::new())
                }
                None => return Err(self.error("identifier, ',' or ')'")),
            }
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::Close) => return Ok(values),
                _ => {
                    self.pos -= 1;
                    return Err(self.error("',' or ')'"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_set_keeps_the_last_of_duplicate_keys() {
        let set = LabelSet::from_pairs([("b", "1"), ("a", "2"), ("b", "3")]);
        assert_eq!(set.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert_eq!(set.label("b"), Some("3"));
        assert_eq!(set.label("c"), None);
    }

    proptest! {
        /// A compact set answers every selector exactly as the map it was built from.
        #[test]
        fn label_set_matches_like_its_map(
            pairs in proptest::collection::btree_map("[a-c]{1,2}", "[x-z]{0,2}", 0..6),
            key in "[a-c]{1,2}",
            value in "[x-z]{0,2}",
        ) {
            let set = LabelSet::from(&pairs);
            for op in ["=", "!=", " in ", " notin "] {
                let text = match op {
                    " in " | " notin " => format!("{key}{op}({value})"),
                    _ => format!("{key}{op}{value}"),
                };
                if let Ok(sel) = Selector::parse(&text) {
                    prop_assert_eq!(sel.matches(&set), sel.matches(&pairs), "{}", text);
                }
            }
            for text in [key.clone(), format!("!{key}")] {
                let sel = Selector::parse(&text).expect("a bare key is a valid selector");
                prop_assert_eq!(sel.matches(&set), sel.matches(&pairs), "{}", text);
            }
        }
    }

    #[test]
    fn parses_every_form() {
        let s = Selector::parse(
            " app = web , tier==front,env!=prod, zone in (a, b),track notin (canary),gpu,!legacy ",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,env!=prod,gpu,!legacy,tier=front,track notin (canary),zone in (a,b)"
        );
        let l = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("zone", "b"),
            ("gpu", ""),
        ]);
        assert!(s.matches(&l));
        let mut l2 = l.clone();
        l2.insert("legacy".into(), "1".into());
        assert!(!s.matches(&l2));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[("a", "b")])));
        assert!(Selector::parse("   ").unwrap().is_empty());
    }

    #[test]
    fn negative_operators_match_absent_labels() {
        let l = labels(&[("app", "web")]);
        assert!(Selector::parse("env!=prod").unwrap().matches(&l));
        assert!(Selector::parse("env notin (prod)").unwrap().matches(&l));
        assert!(!Selector::parse("env in (prod)").unwrap().matches(&l));
        assert!(!Selector::parse("app notin (web)").unwrap().matches(&l));
    }

    #[test]
    fn errors_name_problem_and_position() {
        let e = Selector::parse("app=web,,x").unwrap_err();
        assert_eq!(
            e,
            ParseError::Syntax {
                position: 8,
                message: "found ',', expected: identifier".into()
            }
        );
        let e = Selector::parse("app in x").unwrap_err();
        assert!(matches!(e, ParseError::Syntax { position: 7, .. }), "{e}");
        let empty = Selector::parse("app in ()").unwrap();
        assert!(empty.matches(&labels(&[("app", "")])));
        assert!(!empty.matches(&labels(&[("app", "web")])));
        assert!(matches!(
            Selector::parse("-bad=x").unwrap_err(),
            ParseError::InvalidKey { .. }
        ));
        assert!(matches!(
            Selector::parse("a=-x").unwrap_err(),
            ParseError::InvalidValue { .. }
        ));
        assert!(matches!(
            Selector::parse("a>1").unwrap_err(),
            ParseError::Syntax { position: 1, .. }
        ));
        assert!(Selector::parse("a=b c").is_err());
    }

    #[test]
    fn from_label_selector_and_map() {
        let ls = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into(), "stg".into()]),
                },
                LabelSelectorRequirement {
                    key: "old".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert_eq!(s.to_string(), "app=web,env in (prod,stg),!old");
        assert!(s.matches(&labels(&[("app", "web"), ("env", "stg")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Gt".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(matches!(
            Selector::from_label_selector(&bad),
            Err(ParseError::UnknownOperator { .. })
        ));
        let m = Selector::from_map(&labels(&[("b", "2"), ("a", "1")])).unwrap();
        assert_eq!(m.to_string(), "a=1,b=2");
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        // `in` and `notin` are keywords where a key is expected, as in Kubernetes.
        let key = "(([a-z]{1,5}\\.){0,2}[a-z]{1,5}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?"
            .prop_filter("keyword", |k| k != "in" && k != "notin");
        let value = "([A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?)?";
        let op = prop_oneof![
            Just(Operator::Equals),
            Just(Operator::NotEquals),
            Just(Operator::In),
            Just(Operator::NotIn),
            Just(Operator::Exists),
            Just(Operator::DoesNotExist)
        ];
        (key, op, proptest::collection::vec(value, 1..4)).prop_map(|(k, op, vals)| {
            let vals: Vec<String> = match op {
                Operator::Equals | Operator::NotEquals => vals.into_iter().take(1).collect(),
                Operator::In | Operator::NotIn => vals,
                _ => Vec::new(),
            };
            Requirement::new(&k, op, vals).expect("strategy yields valid keys and values")
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(reqs in proptest::collection::vec(requirement(), 0..5)) {
            let s = Selector::new(reqs);
            let parsed = Selector::parse(&s.to_string());
            prop_assert_eq!(parsed, Ok(s));
        }

        #[test]
        fn matching_follows_set_semantics(
            r in requirement(),
            present in any::<bool>(),
            v in "[a-z0-9]{0,3}",
        ) {
            let mut l = BTreeMap::new();
            if present {
                l.insert(r.key().to_string(), v.clone());
            }
            let contains = present && r.values().contains(&v);
            let expected = match r.operator() {
                Operator::Equals | Operator::In => contains,
                Operator::NotEquals | Operator::NotIn => !contains,
                Operator::Exists => present,
                Operator::DoesNotExist => !present,
            };
            prop_assert_eq!(r.matches(&l), expected);
            // A selector of one requirement agrees with it.
            prop_assert_eq!(Selector::new(vec![r.clone()]).matches(&l), expected);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Selector::parse(&s);
        }
    }
}
