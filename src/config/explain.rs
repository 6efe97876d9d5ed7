//! Configuration errors in the user's words: the key, where the value came
//! from (the file, an environment variable, a flag), what was found and what
//! is expected, and an example in the form the user wrote it in (the
//! default value, which is always valid). No Rust type names.

use std::path::PathBuf;

use figment::error::Kind;
use figment::value::Value;

use super::Config;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file.
    File(PathBuf),
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

const ENV: &str = "environment variable ";
const FLAG: &str = "flag ";

impl Origin {
    /// The provider name figment carries into its errors.
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Env(variable) => format!("{ENV}{variable}"),
            Self::Flag(flag) => format!("{FLAG}{flag}"),
        }
    }

    /// Back from figment's metadata.
    fn of(metadata: Option<&figment::Metadata>) -> Option<Self> {
        let metadata = metadata?;
        if let Some(figment::Source::File(path)) = &metadata.source {
            return Some(Self::File(path.clone()));
        }
        let name = metadata.name.as_ref();
        if let Some(variable) = name.strip_prefix(ENV) {
            return Some(Self::Env(variable.to_owned()));
        }
        // Flags are parsed (and refused) by clap before they get here.
        None
    }

    /// `key = value` as written in this origin.
    fn example(&self, key: &str, value: &str) -> String {
        match self {
            Self::File(_) => format!("{key} = {value}"),
            Self::Env(variable) => format!("{variable}={}", value.trim_matches('"')),
            Self::Flag(flag) => format!("{flag} {}", value.trim_matches('"')),
        }
    }
}

/// The message of the first of figment's errors.
pub fn error(error: figment::Error) -> String {
    let Some(error) = error.into_iter().next() else { return "unreadable configuration".into() };
    let key = error.path.join(".");
    let origin = Origin::of(error.metadata.as_ref());
    let from = match &origin {
        Some(Origin::File(path)) => format!(" in {}", path.display()),
        Some(Origin::Env(variable)) => format!(" from environment variable {variable}"),
        Some(Origin::Flag(flag)) => format!(" from {flag}"),
        None => String::new(),
    };
    let (problem, with_example) = match &error.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            (format!("found {actual}, expected {}", expected_words(expected)), true)
        }
        Kind::UnknownField(field, known) => {
            let known = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            (format!("`{field}` is not a key here; the keys are {known}"), false)
        }
        Kind::UnknownVariant(found, known) => (format!("`{found}` is not one of {}", known.join(", ")), true),
        Kind::MissingField(field) => (format!("`{field}` is required here"), false),
        Kind::Message(message) if message.contains("untagged enum") => {
            ("expected a string or a list of strings".into(), true)
        }
        Kind::Message(message) => (message.clone(), true),
        other => (other.to_string(), true),
    };
    let example = with_example
        .then(|| default_at(&error.path))
        .flatten()
        .map(|value| {
            format!(
                "; e.g. {}",
                origin.as_ref().unwrap_or(&Origin::File(PathBuf::new())).example(&key, &value)
            )
        })
        .unwrap_or_default();
    format!("{key}{from}: {problem}{example}")
}

/// What serde's `expected` means, for someone writing TOML.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list such as [\"a\", \"b\"]".into(),
        "a boolean" => "true or false".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.to_owned(),
    }
}

/// The default value at `path`, written as TOML (scalars and lists only).
fn default_at(path: &[String]) -> Option<String> {
    let mut value = Value::serialize(Config::default()).ok()?;
    for segment in path {
        value = match value {
            Value::Dict(_, mut dict) => dict.remove(segment)?,
            Value::Array(_, mut items) => {
                let i: usize = segment.parse().ok()?;
                (i < items.len()).then(|| items.swap_remove(i))?
            }
            _ => return None,
        };
    }
    toml_of(&value)
}

fn toml_of(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match n.to_u128() {
            Some(n) => n.to_string(),
            None => n.to_f64()?.to_string(),
        },
        Value::Array(_, items) => {
            let items: Option<Vec<String>> = items.iter().map(toml_of).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Empty(..) | Value::Dict(..) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_make_examples_in_the_users_form() {
        assert_eq!(default_at(&["cache".into(), "history_revisions".into()]), Some("10000".into()));
        assert_eq!(default_at(&["namespaces".into(), "0".into(), "name".into()]), Some("\"default\"".into()));
        assert_eq!(default_at(&["etcd".into()]), None, "a table has no one-line example");
        let env = Origin::Env("GATEWAY_LOG__FILTER".into());
        assert_eq!(env.example("log.filter", "\"info\""), "GATEWAY_LOG__FILTER=info");
        assert_eq!(Origin::File(PathBuf::new()).example("log.filter", "\"info\""), "log.filter = \"info\"");
    }
}
