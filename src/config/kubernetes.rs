//! `[kubernetes]`: the resources the Kubernetes-style list/watch surface
//! serves (COMPAT.md §1), and the key layout ([`KeyTemplate`]) that maps an
//! object's namespace and name to its etcd key and back.

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::validate::ConfigError;

/// The Kubernetes-style surface. Off (no routes answer) until a resource is
/// configured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The resources served, one table each.
    pub resources: Vec<KubeResourceConfig>,
    /// How often a watch that asked for bookmarks (`allowWatchBookmarks`)
    /// gets one while nothing else was sent: the API server sends them about
    /// once a minute.
    pub bookmark_interval: HumanDuration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self { resources: Vec::new(), bookmark_interval: HumanDuration::secs(60) }
    }
}

/// One resource: JSON objects under a gateway namespace, served as
/// `/apis/{group}/{version}/.../{resource}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubeResourceConfig {
    /// The gateway namespace whose keys hold the objects.
    pub namespace: String,
    /// API group, e.g. `example.com` (the core group `""` is not served).
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural name as in URLs, e.g. `widgets`.
    pub resource: String,
    /// Kind, e.g. `Widget` (lists are `WidgetList`).
    pub kind: String,
    /// Key layout relative to the namespace prefix, e.g.
    /// `widgets/{namespace}/{name}`; without `{namespace}` the resource is
    /// cluster-scoped.
    pub key: String,
}

/// One piece of a key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// Literal text.
    Text(String),
    /// The object's namespace.
    Namespace,
    /// The object's name.
    Name,
}

/// A parsed key layout: literal text with `{namespace}` (at most once) and
/// `{name}` (exactly once), never two placeholders side by side (a key
/// could then be split more than one way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<KeyPart>,
}

impl KeyTemplate {
    /// Parses `template`.
    ///
    /// # Errors
    /// A sentence saying what is wrong (the caller names the field).
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(KeyPart::Text(rest[..open].to_owned()));
            }
            let close =
                rest[open..].find('}').ok_or("a '{' is not closed; write {namespace} or {name}")? + open;
            let part = match &rest[open + 1..close] {
                "namespace" => KeyPart::Namespace,
                "name" => KeyPart::Name,
                other => {
                    return Err(format!("unknown placeholder {{{other}}}: only {{namespace}} and {{name}}"));
                }
            };
            if parts.contains(&part) {
                return Err(format!("{{{}}} appears twice", &rest[open + 1..close]));
            }
            if matches!(parts.last(), Some(KeyPart::Name | KeyPart::Namespace)) {
                return Err("two placeholders side by side: separate them, e.g. with '/'".into());
            }
            parts.push(part);
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("a '}' without its '{'".into());
        }
        if !rest.is_empty() {
            parts.push(KeyPart::Text(rest.to_owned()));
        }
        if !parts.contains(&KeyPart::Name) {
            return Err("needs {name}, e.g. \"widgets/{namespace}/{name}\"".into());
        }
        Ok(Self { parts })
    }

    /// Whether the layout has `{namespace}` (the resource is namespaced).
    pub fn namespaced(&self) -> bool {
        self.parts.contains(&KeyPart::Namespace)
    }

    /// The key of the object `name` in `namespace` (ignored when cluster-scoped).
    pub fn key(&self, namespace: &str, name: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                KeyPart::Text(text) => text.as_str(),
                KeyPart::Namespace => namespace,
                KeyPart::Name => name,
            })
            .collect()
    }

    /// The longest key prefix shared by every object of `namespace` (or of
    /// every namespace, `None`): the text up to the first placeholder whose
    /// value is not known.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let mut prefix = String::new();
        for part in &self.parts {
            match (part, namespace) {
                (KeyPart::Text(text), _) => prefix.push_str(text),
                (KeyPart::Namespace, Some(ns)) => prefix.push_str(ns),
                _ => break,
            }
        }
        prefix
    }

    /// The `(namespace, name)` of `key`, when the key has this layout and
    /// both values are non-empty text without '/' (`namespace` is `""` for a
    /// cluster-scoped layout).
    pub fn parse_key<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let (mut namespace, mut name) = ("", None);
        let mut rest = key;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                KeyPart::Text(text) => rest = rest.strip_prefix(text.as_str())?,
                KeyPart::Namespace | KeyPart::Name => {
                    // The value runs to the next literal (or the end).
                    let end = match self.parts.get(i + 1) {
                        Some(KeyPart::Text(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    let value = &rest[..end];
                    if value.is_empty() || value.contains('/') {
                        return None;
                    }
                    if *part == KeyPart::Name {
                        name = Some(value);
                    } else {
                        namespace = value;
                    }
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some((namespace, name?))
    }
}

/// Group, version, resource and kind are URL segments and JSON names.
fn valid_segment(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

impl KubernetesConfig {
    /// Checks every resource; `namespaces` are the configured gateway namespaces.
    ///
    /// # Errors
    /// The first bad field, named as `kubernetes.resources[i].field`.
    pub fn validate(&self, namespaces: &[&str]) -> Result<(), ConfigError> {
        let bad = |field: String, value: &str, reason: &str| ConfigError {
            field,
            value: format!("{value:?}"),
            reason: reason.to_owned(),
        };
        if self.bookmark_interval.get().as_secs() < 1 {
            return Err(ConfigError {
                field: "kubernetes.bookmark_interval".into(),
                value: self.bookmark_interval.to_string(),
                reason: "must be at least 1s".into(),
            });
        }
        for (i, r) in self.resources.iter().enumerate() {
            let field = |f: &str| format!("kubernetes.resources[{i}].{f}");
            if !namespaces.contains(&r.namespace.as_str()) {
                return Err(bad(field("namespace"), &r.namespace, "no such namespace in [[namespaces]]"));
            }
            if !valid_segment(&r.group) || !r.group.contains('.') {
                return Err(bad(
                    field("group"),
                    &r.group,
                    "must be a DNS name with a dot, e.g. \"example.com\" (the core group is not served)",
                ));
            }
            let lower = |s: &str| s.bytes().all(|b| !b.is_ascii_uppercase());
            if !valid_segment(&r.version) || !r.version.starts_with('v') || !lower(&r.version) {
                return Err(bad(field("version"), &r.version, "must look like \"v1\" or \"v1beta1\""));
            }
            if !valid_segment(&r.resource) || !lower(&r.resource) || r.resource.contains('.') {
                return Err(bad(
                    field("resource"),
                    &r.resource,
                    "must be a lowercase plural, e.g. \"widgets\"",
                ));
            }
            if r.resource == "namespaces" {
                return Err(bad(
                    field("resource"),
                    &r.resource,
                    "\"namespaces\" is a path segment of the API",
                ));
            }
            let upper_first = r.kind.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
            if !upper_first || !r.kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad(field("kind"), &r.kind, "must be a CamelCase name, e.g. \"Widget\""));
            }
            KeyTemplate::parse(&r.key).map_err(|reason| bad(field("key"), &r.key, &reason))?;
            let same = |o: &&KubeResourceConfig| o.group == r.group && o.version == r.version;
            for other in self.resources[..i].iter().filter(same) {
                if other.resource == r.resource || other.kind == r.kind {
                    return Err(bad(
                        field("resource"),
                        &r.resource,
                        &format!(
                            "{}/{} already serves {} ({})",
                            r.group, r.version, other.resource, other.kind
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_build_and_parse_keys() {
        let t = KeyTemplate::parse("widgets/{namespace}/{name}").unwrap();
        assert!(t.namespaced());
        assert_eq!(t.key("ns1", "a"), "widgets/ns1/a");
        assert_eq!(t.prefix(Some("ns1")), "widgets/ns1/");
        assert_eq!(t.prefix(None), "widgets/");
        assert_eq!(t.parse_key("widgets/ns1/a"), Some(("ns1", "a")));
        assert_eq!(t.parse_key("widgets/ns1/a/b"), None);
        assert_eq!(t.parse_key("widgets//a"), None);
        assert_eq!(t.parse_key("gadgets/ns1/a"), None);
        let c = KeyTemplate::parse("/registry/{name}.json").unwrap();
        assert!(!c.namespaced());
        assert_eq!(c.parse_key("/registry/x.json"), Some(("", "x")));
        assert_eq!(c.parse_key("/registry/x.yaml"), None);
        assert_eq!(c.prefix(Some("ignored")), "/registry/");
    }

    #[test]
    fn bad_templates_say_why() {
        assert_eq!(
            KeyTemplate::parse("w/{namespace}").unwrap_err(),
            "needs {name}, e.g. \"widgets/{namespace}/{name}\""
        );
        assert!(KeyTemplate::parse("w/{namespace}{name}").unwrap_err().contains("side by side"));
        assert!(KeyTemplate::parse("w/{name}/{name}").unwrap_err().contains("twice"));
        assert!(KeyTemplate::parse("w/{nam").unwrap_err().contains("not closed"));
        assert!(KeyTemplate::parse("w/{kind}/{name}").unwrap_err().contains("unknown placeholder {kind}"));
    }

    #[test]
    fn bad_resources_name_the_field() {
        let good = KubeResourceConfig {
            namespace: "apps".into(),
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            kind: "Widget".into(),
            key: "widgets/{namespace}/{name}".into(),
        };
        let check = |tweak: fn(&mut KubeResourceConfig)| {
            let mut bad = good.clone();
            tweak(&mut bad);
            let config =
                KubernetesConfig { resources: vec![good.clone(), bad], ..KubernetesConfig::default() };
            config.validate(&["apps"]).unwrap_err().to_string()
        };
        assert!(
            KubernetesConfig { resources: vec![good.clone()], ..Default::default() }
                .validate(&["apps"])
                .is_ok()
        );
        assert_eq!(
            check(|r| r.namespace = "nope".into()),
            "invalid configuration: kubernetes.resources[1].namespace = \"nope\": no such namespace in [[namespaces]]"
        );
        assert!(
            check(|r| r.group = "core".into())
                .starts_with("invalid configuration: kubernetes.resources[1].group")
        );
        assert!(check(|r| r.version = "1".into()).contains("resources[1].version"));
        assert!(check(|r| r.resource = "Widgets".into()).contains("resources[1].resource"));
        assert!(check(|r| r.kind = "widget".into()).contains("resources[1].kind"));
        assert_eq!(
            check(|r| r.key = "w/{namespace}".into()),
            "invalid configuration: kubernetes.resources[1].key = \"w/{namespace}\": needs {name}, e.g. \"widgets/{namespace}/{name}\""
        );
        assert!(check(|_| {}).contains("example.com/v1 already serves widgets (Widget)"));
    }
}
