//! Filters (`filter=path==literal`, `path!=literal`, `path`) and selects
//! (`select=a.b,c`) on JSON values.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// What a filter checks at its path.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Equals(Value),
    NotEquals(Value),
    Exists,
}

/// One `filter=` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    path: Vec<String>,
    test: Test,
}

/// Splits `a.b.c` into segments; every segment must be non-empty.
fn parse_path(path: &str, expr: &str) -> Result<Vec<String>, ApiError> {
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    if path.is_empty() || segments.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(format!(
            "invalid filter {expr:?}: the path must be dot-separated names, e.g. labels.tier"
        )));
    }
    Ok(segments)
}

/// A literal: a JSON number, `true`/`false`/`null` or a quoted JSON string
/// as such; anything else as a plain string.
fn literal(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => v,
        _ => Value::String(text.to_owned()),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The value at `path` in `doc`.
fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, segment| v.as_object()?.get(segment))
}

impl Filter {
    /// Parses one expression.
    ///
    /// # Errors
    /// 400 naming the expression.
    pub fn parse(expr: &str) -> Result<Self, ApiError> {
        let (path, test) = if let Some((path, lit)) = expr.split_once("==") {
            (path, Test::Equals(literal(lit)))
        } else if let Some((path, lit)) = expr.split_once("!=") {
            (path, Test::NotEquals(literal(lit)))
        } else if expr.contains(['=', '!', '<', '>']) {
            return Err(ApiError::bad_request(format!(
                "invalid filter {expr:?}: use path==literal, path!=literal or path"
            )));
        } else {
            (expr, Test::Exists)
        };
        Ok(Self { path: parse_path(path.trim(), expr)?, test })
    }

    /// Whether a value matches; `doc` is `None` when the value is not JSON,
    /// which matches no filter except `!=`.
    pub fn matches(&self, doc: Option<&Value>) -> bool {
        let found = doc.and_then(|d| lookup(d, &self.path));
        match &self.test {
            Test::Exists => found.is_some(),
            Test::Equals(lit) => found.is_some_and(|v| json_eq(v, lit)),
            Test::NotEquals(lit) => !found.is_some_and(|v| json_eq(v, lit)),
        }
    }
}

/// A `select=` projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    paths: Vec<Vec<String>>,
}

impl Select {
    /// Parses `a.b,c`.
    ///
    /// # Errors
    /// 400 naming the select.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let paths = text
            .split(',')
            .map(|p| {
                let p = p.trim();
                let segments: Vec<String> = p.split('.').map(str::to_owned).collect();
                if p.is_empty() || segments.iter().any(String::is_empty) {
                    Err(ApiError::bad_request(format!(
                        "invalid select {text:?}: list dot-separated paths separated by commas, e.g. name,labels.tier"
                    )))
                } else {
                    Ok(segments)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { paths })
    }

    /// Keeps only the selected paths, nested as in `doc`.
    pub fn project(&self, doc: &Value) -> Value {
        let mut out = Map::new();
        for path in &self.paths {
            if let Some(v) = lookup(doc, path) {
                insert_path(&mut out, path, v.clone());
            }
        }
        Value::Object(out)
    }
}

fn insert_path(out: &mut Map<String, Value>, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            out.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let child = out.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = child {
                insert_path(map, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_compare_typed_literals() {
        let doc = json!({"port": 80, "name": "web", "on": true, "labels": {"tier": "front"}, "n": null});
        let ok = |e: &str| Filter::parse(e).unwrap().matches(Some(&doc));
        assert!(ok("port==80") && ok("port==80.0") && !ok("port==\"80\""));
        assert!(ok("name==web") && ok("name==\"web\"") && ok("on==true") && ok("n==null"));
        assert!(ok("labels.tier==front") && ok("labels.tier!=back") && ok("labels.tier"));
        assert!(!ok("labels.zone") && ok("labels.zone!=x") && !ok("labels.zone==x"));
        let not_json = |e: &str| Filter::parse(e).unwrap().matches(None);
        assert!(!not_json("a") && !not_json("a==1") && not_json("a!=1"));
    }

    #[test]
    fn bad_filters_are_rejected() {
        for bad in ["", "==1", "a..b==1", ".a", "a<3", "a=1", "!"] {
            assert!(Filter::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn select_projects_nested_paths() {
        let doc = json!({"name": "web", "port": 80, "labels": {"tier": "front", "zone": "a"}});
        let s = Select::parse("name,labels.tier,missing").unwrap();
        assert_eq!(s.project(&doc), json!({"name": "web", "labels": {"tier": "front"}}));
        assert!(Select::parse("a,,b").is_err());
    }
}
