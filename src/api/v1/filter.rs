//! Filters on JSON values (`filter=`). One parameter holds one or more
//! conditions separated by commas, as in Kubernetes selectors; all must
//! hold, and so must every repeated `filter=`:
//!
//! | condition | holds when the value at `path` |
//! |---|---|
//! | `path` | exists |
//! | `!path` | does not exist |
//! | `path==v`, `path=v` | equals `v` |
//! | `path!=v` | does not equal `v` (or is absent) |
//! | `path<n`, `<=`, `>`, `>=` | is a number in that relation to `n` |
//! | `path in (a, b)` | equals one of them |
//! | `path notin (a, b)` | equals none of them (or is absent) |
//!
//! `path` is dot-separated names into JSON objects (`labels.tier`); spaces
//! around operators are allowed (inside a bare value they are part of it); a
//! literal is a JSON number, `true`,
//! `false`, `null` or a quoted JSON string as such (quote a string that
//! holds a comma or a parenthesis), and anything else a plain string. A
//! value that is not JSON holds only the negative conditions. Errors name the
//! expression and the character where it went wrong.

use serde_json::Value;

use crate::error::ApiError;

/// What a condition checks at its path.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Exists,
    Absent,
    Equals(Value),
    NotEquals(Value),
    Less(f64),
    LessOrEqual(f64),
    Greater(f64),
    GreaterOrEqual(f64),
    In(Vec<Value>),
    NotIn(Vec<Value>),
}

/// One condition: a path and a test.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    path: Vec<String>,
    test: Test,
}

/// One `filter=` parameter: conditions that must all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

/// The value at `path` in `doc`.
pub fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, segment| v.as_object()?.get(segment))
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Filter {
    /// Parses one `filter=` value.
    ///
    /// # Errors
    /// 400 naming the expression and the character where it went wrong.
    pub fn parse(expr: &str) -> Result<Self, ApiError> {
        let mut parser = Parser { text: expr, at: 0 };
        let mut conditions = vec![parser.condition()?];
        while parser.eat(',') {
            conditions.push(parser.condition()?);
        }
        parser.skip_spaces();
        if parser.at < expr.len() {
            return Err(parser.error("expected `,` and another condition, or the end"));
        }
        Ok(Self { conditions })
    }

    /// Whether a value holds every condition; `doc` is `None` when the value
    /// is not JSON.
    pub fn matches(&self, doc: Option<&Value>) -> bool {
        self.conditions.iter().all(|c| c.holds(doc.and_then(|d| lookup(d, &c.path))))
    }
}

impl Condition {
    fn holds(&self, found: Option<&Value>) -> bool {
        let number = || found.and_then(Value::as_f64);
        match &self.test {
            Test::Exists => found.is_some(),
            Test::Absent => found.is_none(),
            Test::Equals(lit) => found.is_some_and(|v| json_eq(v, lit)),
            Test::NotEquals(lit) => !found.is_some_and(|v| json_eq(v, lit)),
            Test::Less(n) => number().is_some_and(|v| v < *n),
            Test::LessOrEqual(n) => number().is_some_and(|v| v <= *n),
            Test::Greater(n) => number().is_some_and(|v| v > *n),
            Test::GreaterOrEqual(n) => number().is_some_and(|v| v >= *n),
            Test::In(set) => found.is_some_and(|v| set.iter().any(|lit| json_eq(v, lit))),
            Test::NotIn(set) => !found.is_some_and(|v| set.iter().any(|lit| json_eq(v, lit))),
        }
    }
}

/// A cursor over one expression.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

/// Characters that end a path (or a bare literal, for those that apply).
const OPERATOR_CHARS: &[char] = &['=', '!', '<', '>', ',', '(', ')', '"', ' ', '\t'];

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn error(&self, what: &str) -> ApiError {
        let position = self.text[..self.at].chars().count() + 1;
        ApiError::bad_request(format!("invalid filter {:?} at character {position}: {what}", self.text))
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    /// Skips spaces, then consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            return true;
        }
        false
    }

    /// Consumes `word` if it comes next as a whole word.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_spaces();
        let rest = self.rest();
        let boundary = rest[word.len().min(rest.len())..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        if rest.starts_with(word) && boundary {
            self.at += word.len();
            return true;
        }
        false
    }

    fn condition(&mut self) -> Result<Condition, ApiError> {
        if self.eat('!') {
            return Ok(Condition { path: self.path()?, test: Test::Absent });
        }
        let path = self.path()?;
        self.skip_spaces();
        let operators = [("==", 0), ("!=", 1), ("<=", 2), (">=", 3), ("=", 0), ("<", 4), (">", 5)];
        let operator = operators.iter().find(|(op, _)| self.rest().starts_with(op));
        let test = if let Some((op, kind)) = operator {
            self.at += op.len();
            match kind {
                0 => Test::Equals(self.literal()?),
                1 => Test::NotEquals(self.literal()?),
                _ => {
                    let n = self.number(op)?;
                    match kind {
                        2 => Test::LessOrEqual(n),
                        3 => Test::GreaterOrEqual(n),
                        4 => Test::Less(n),
                        _ => Test::Greater(n),
                    }
                }
            }
        } else if self.eat_word("in") {
            Test::In(self.set("in")?)
        } else if self.eat_word("notin") {
            Test::NotIn(self.set("notin")?)
        } else {
            Test::Exists
        };
        Ok(Condition { path, test })
    }

    /// `a.b.c`: names separated by dots, none empty.
    fn path(&mut self) -> Result<Vec<String>, ApiError> {
        self.skip_spaces();
        let end = self.rest().find(OPERATOR_CHARS).unwrap_or(self.rest().len());
        let path = &self.rest()[..end];
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if path.is_empty() || segments.iter().any(String::is_empty) {
            return Err(self.error("expected a path of dot-separated names, e.g. labels.tier"));
        }
        self.at += end;
        Ok(segments)
    }

    /// A literal: a quoted JSON string, or a bare word up to `,`, `)` or the
    /// end, read as a JSON number, boolean or null when it is one.
    fn literal(&mut self) -> Result<Value, ApiError> {
        self.skip_spaces();
        if self.rest().starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(self.rest()).into_iter::<String>();
            return match stream.next() {
                Some(Ok(s)) => {
                    self.at += stream.byte_offset();
                    Ok(Value::String(s))
                }
                _ => Err(self.error("a quoted value must be a JSON string, e.g. \"a,b\"")),
            };
        }
        let end = self.rest().find([',', ')']).unwrap_or(self.rest().len());
        let word = self.rest()[..end].trim_end().to_owned();
        if word.is_empty() {
            return Err(self.error("expected a value"));
        }
        if word.contains(['(', '"']) {
            return Err(self.error("quote a value that holds a parenthesis or a quote"));
        }
        self.at += end;
        Ok(match serde_json::from_str::<Value>(&word) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
            _ => Value::String(word),
        })
    }

    fn number(&mut self, op: &str) -> Result<f64, ApiError> {
        let start = self.at;
        match self.literal()? {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            _ => {
                self.at = start;
                self.skip_spaces();
                Err(self.error(&format!("`{op}` compares numbers: expected a number")))
            }
        }
    }

    /// `(a, b, ...)` after `in`/`notin`.
    fn set(&mut self, word: &str) -> Result<Vec<Value>, ApiError> {
        if !self.eat('(') {
            return Err(self.error(&format!("expected `(` after `{word}`, e.g. {word} (a, b)")));
        }
        let mut values = vec![self.literal()?];
        while self.eat(',') {
            values.push(self.literal()?);
        }
        if !self.eat(')') {
            return Err(self.error("expected `,` or `)`"));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"port": 80, "name": "web", "on": true, "labels": {"tier": "front"}, "n": null, "note": "a,b"})
    }

    fn holds(expr: &str) -> bool {
        Filter::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}")).matches(Some(&doc()))
    }

    fn error(expr: &str) -> String {
        Filter::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn equality_compares_typed_literals() {
        assert!(holds("port==80") && holds("port==80.0") && !holds("port==\"80\""));
        assert!(holds("name==web") && holds("name==\"web\"") && holds("on==true") && holds("n==null"));
        assert!(holds("labels.tier==front") && holds("labels.tier!=back") && holds("labels.tier"));
        assert!(!holds("labels.zone") && holds("labels.zone!=x") && !holds("labels.zone==x"));
        assert!(holds("name=web"), "a single = as in Kubernetes selectors");
        assert!(Filter::parse("title==hello world").unwrap().matches(Some(&json!({"title": "hello world"}))));
        assert!(holds("note==\"a,b\""), "a quoted value may hold a comma");
        let not_json = |e: &str| Filter::parse(e).unwrap().matches(None);
        assert!(!not_json("a") && !not_json("a==1") && not_json("a!=1") && not_json("!a"));
    }

    #[test]
    fn spaces_around_operators_are_allowed() {
        assert!(holds("labels.tier == front") && holds(" port >= 80 ") && holds("name in ( web , api )"));
    }

    #[test]
    fn numbers_compare_and_sets_match() {
        assert!(holds("port>79") && holds("port>=80") && holds("port<81") && holds("port<=80"));
        assert!(!holds("port>80") && !holds("name>1"), "a string is not greater than anything");
        assert!(holds("name in (api, web)") && !holds("name in (api)") && holds("port in (80, 443)"));
        assert!(holds("name notin (api)") && !holds("name notin (web)") && holds("labels.zone notin (a)"));
        assert!(holds("!labels.zone") && !holds("!labels.tier"));
    }

    #[test]
    fn commas_join_conditions_that_must_all_hold() {
        assert!(holds("port==80,name==web") && !holds("port==80,name==api"));
        assert!(holds("name in (web, api),port>1"));
    }

    #[test]
    fn errors_point_at_the_character() {
        assert_eq!(
            error("port > high"),
            "invalid filter \"port > high\" at character 8: `>` compares numbers: expected a number"
        );
        assert_eq!(
            error("a..b==1"),
            "invalid filter \"a..b==1\" at character 1: expected a path of dot-separated names, e.g. labels.tier"
        );
        assert_eq!(
            error("==1"),
            "invalid filter \"==1\" at character 1: expected a path of dot-separated names, e.g. labels.tier"
        );
        assert_eq!(
            error("a==1)"),
            "invalid filter \"a==1)\" at character 5: expected `,` and another condition, or the end"
        );
        assert_eq!(
            error("a in x"),
            "invalid filter \"a in x\" at character 6: expected `(` after `in`, e.g. in (a, b)"
        );
        assert_eq!(error("a in (1, 2"), "invalid filter \"a in (1, 2\" at character 11: expected `,` or `)`");
        assert_eq!(
            error("a==1,"),
            "invalid filter \"a==1,\" at character 6: expected a path of dot-separated names, e.g. labels.tier"
        );
        assert_eq!(error("a=="), "invalid filter \"a==\" at character 4: expected a value");
        assert_eq!(
            error(""),
            "invalid filter \"\" at character 1: expected a path of dot-separated names, e.g. labels.tier"
        );
    }
}
