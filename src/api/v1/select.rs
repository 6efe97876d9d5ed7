//! Selects (`select=a.b,c`): JSON values projected to the listed paths,
//! nested as in the source.

use serde_json::{Map, Value};

use super::filter::lookup;
use crate::error::ApiError;

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
    fn select_projects_nested_paths() {
        let doc = json!({"name": "web", "port": 80, "labels": {"tier": "front", "zone": "a"}});
        let s = Select::parse("name,labels.tier,missing").unwrap();
        assert_eq!(s.project(&doc), json!({"name": "web", "labels": {"tier": "front"}}));
        assert!(Select::parse("a,,b").is_err());
    }
}
