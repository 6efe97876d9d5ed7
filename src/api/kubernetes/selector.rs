//! `labelSelector` and `fieldSelector`, in the API server's syntax and
//! with its matching rules: `key`, `!key`, `key=v`, `key==v`, `key!=v`,
//! `key in (a,b)`, `key notin (a,b)` for labels; `=`, `==`, `!=` on
//! `metadata.name` and `metadata.namespace` for fields. All requirements
//! must hold.

use serde_json::{Map, Value};

use super::status::Status;

/// Longest label value (the API server's limit).
const MAX_LABEL_VALUE: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Exists, v) => v.is_some(),
            (Op::NotExists, v) => v.is_none(),
            (Op::Equals(want), Some(v)) => v == want,
            (Op::NotEquals(want), v) => v != Some(want.as_str()),
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
            (Op::Equals(_) | Op::In(_), None) => false,
        }
    }
}

/// A parsed `labelSelector` (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A parsed `fieldSelector` (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= MAX_LABEL_VALUE
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits on commas outside parentheses.
fn split_requirements(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_set(text: &str, requirement: &str) -> Result<Vec<String>, String> {
    let inner =
        text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| {
            format!("{requirement:?}: the values of in/notin go in parentheses, e.g. (a,b)")
        })?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if let Some(bad) = values.iter().find(|v| !valid_value(v)) {
        return Err(format!("{requirement:?}: invalid label value {bad:?}"));
    }
    Ok(values)
}

fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let t = text.trim();
    let value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        if valid_value(v) { Ok(v.to_owned()) } else { Err(format!("{t:?}: invalid label value {v:?}")) }
    };
    let (key, op) = if let Some(key) = t.strip_prefix('!') {
        (key.trim(), Op::NotExists)
    } else if let Some((key, v)) = t.split_once("!=") {
        (key.trim(), Op::NotEquals(value(v)?))
    } else if let Some((key, v)) = t.split_once("==") {
        (key.trim(), Op::Equals(value(v)?))
    } else if let Some((key, v)) = t.split_once('=') {
        (key.trim(), Op::Equals(value(v)?))
    } else if let Some((key, set)) = t.split_once(" notin ") {
        (key.trim(), Op::NotIn(parse_set(set, t)?))
    } else if let Some((key, set)) = t.split_once(" in ") {
        (key.trim(), Op::In(parse_set(set, t)?))
    } else {
        (t, Op::Exists)
    };
    if !valid_key(key) {
        return Err(format!("{t:?}: invalid label key {key:?}"));
    }
    Ok(Requirement { key: key.to_owned(), op })
}

fn parse_all(text: &str) -> Result<Vec<Requirement>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_requirements(text).into_iter().map(parse_requirement).collect()
}

impl LabelSelector {
    /// Parses a `labelSelector` value.
    ///
    /// # Errors
    /// 400 `BadRequest` naming the requirement that does not parse.
    pub fn parse(text: &str) -> Result<Self, Status> {
        parse_all(text)
            .map(Self)
            .map_err(|e| Status::bad_request(format!("unable to parse requirement: {e}")))
    }

    /// Whether `object`'s `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Map<String, Value>) -> bool {
        let labels = object.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        self.0.iter().all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FieldSelector {
    /// The fields a selector may name.
    pub const FIELDS: [&str; 2] = ["metadata.name", "metadata.namespace"];

    /// Parses a `fieldSelector` value.
    ///
    /// # Errors
    /// 400 `BadRequest` for a field other than [`Self::FIELDS`] or an
    /// operator other than `=`, `==`, `!=`.
    pub fn parse(text: &str) -> Result<Self, Status> {
        let requirements =
            parse_all(text).map_err(|e| Status::bad_request(format!("invalid selector: {e}")))?;
        for r in &requirements {
            if !Self::FIELDS.contains(&r.key.as_str()) {
                return Err(Status::bad_request(format!(
                    "field label not supported: {} (supported: metadata.name, metadata.namespace)",
                    r.key
                )));
            }
            if !matches!(r.op, Op::Equals(_) | Op::NotEquals(_)) {
                return Err(Status::bad_request(format!(
                    "invalid selector: field selectors support only =, == and != ({})",
                    r.key
                )));
            }
        }
        Ok(Self(requirements))
    }

    /// Whether the object `name` in `namespace` satisfies every requirement.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|r| r.matches(Some(if r.key == "metadata.name" { name } else { namespace })))
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(labels: Value) -> Map<String, Value> {
        json!({"metadata": {"labels": labels}}).as_object().unwrap().clone()
    }

    #[test]
    fn label_selectors_match_as_the_api_server_does() {
        let o = object(json!({"tier": "web", "env": "prod"}));
        let yes = [
            "",
            "tier",
            "tier=web",
            "tier==web",
            "tier!=db",
            "!missing",
            "env in (prod, dev)",
            "env notin (dev)",
            "missing notin (x)",
            "missing!=x",
            "tier=web,env=prod",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        let no = [
            "missing",
            "tier=db",
            "!tier",
            "env in (dev)",
            "env notin (prod)",
            "missing in (x)",
            "tier=web,env=dev",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        assert!(!LabelSelector::parse("tier").unwrap().matches(&Map::new()));
    }

    #[test]
    fn bad_selectors_are_bad_requests() {
        for s in ["tier=a b", "env in prod", "=x", "a=b=c"] {
            let e = LabelSelector::parse(s).unwrap_err();
            assert_eq!((e.code, e.reason), (400, "BadRequest"), "{s}");
        }
        let e = FieldSelector::parse("spec.x=1").unwrap_err();
        assert!(e.message.starts_with("field label not supported: spec.x"), "{}", e.message);
        assert!(FieldSelector::parse("metadata.name in (a)").is_err());
    }

    #[test]
    fn field_selectors_name_and_namespace() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=kube").unwrap();
        assert!(f.matches("default", "a"));
        assert!(!f.matches("kube", "a"));
        assert!(!f.matches("default", "b"));
    }
}
