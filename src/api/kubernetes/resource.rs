//! The configured resources, and the turning of a stored key-value into the
//! Kubernetes object clients see: the stored JSON object with `apiVersion`,
//! `kind`, `metadata.name`/`metadata.namespace` (from the key when absent)
//! and `metadata.resourceVersion` = the version's `mod_revision`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::watch::AddedLines;
use crate::cache::{KeyRange, KeyValue};
use crate::config::{KeyTemplate, KubeResourceConfig};
use crate::metrics::Metrics;
use crate::namespaces::{Namespace, Namespaces};

/// One served resource.
pub struct Resource {
    /// As configured.
    pub config: KubeResourceConfig,
    /// The parsed key layout.
    pub template: KeyTemplate,
    /// The gateway namespace holding the objects.
    pub namespace: Arc<Namespace>,
    /// `group/version`.
    pub api_version: String,
    /// Its position in the configuration (its fan-out shape variant).
    pub index: u32,
    /// `ADDED` lines of its objects, shared by watchers.
    pub added_lines: AddedLines,
}

/// A stored object as served: its namespace and name (from the key) and
/// the object.
pub struct Object {
    /// The object's namespace (`""` when cluster-scoped).
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The JSON object, completed.
    pub object: Map<String, Value>,
}

impl Resource {
    /// Whether objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.template.namespaced()
    }

    /// The keys of every object of `namespace` (or of all namespaces).
    pub fn range(&self, namespace: Option<&str>) -> KeyRange {
        KeyRange::prefix(Bytes::from(self.template.prefix(namespace)))
    }

    /// The key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> Bytes {
        Bytes::from(self.template.key(namespace, name))
    }

    /// The `(namespace, name)` of a key of this resource's layout.
    pub fn names<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        self.template.parse_key(std::str::from_utf8(key).ok()?)
    }

    /// The object of `kv` with `resourceVersion` = `resource_version`
    /// (`kv`'s `mod_revision`, or a deletion's revision), or `None` when
    /// the key is not of this layout or the value is not a JSON object (that
    /// is counted in `metrics` and logged).
    pub fn object(&self, kv: &KeyValue, resource_version: i64, metrics: &Metrics) -> Option<Object> {
        let (namespace, name) = self.names(&kv.key)?;
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&kv.value) else {
            self.invalid(kv, "not a JSON object", metrics);
            return None;
        };
        let metadata = object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(metadata) = metadata else {
            self.invalid(kv, "metadata is not an object", metrics);
            return None;
        };
        metadata.entry("name").or_insert_with(|| Value::from(name));
        if self.namespaced() {
            metadata.entry("namespace").or_insert_with(|| Value::from(namespace));
        }
        metadata.insert("resourceVersion".into(), Value::from(resource_version.to_string()));
        object.insert("apiVersion".into(), Value::from(self.api_version.as_str()));
        object.insert("kind".into(), Value::from(self.config.kind.as_str()));
        Some(Object { namespace: namespace.to_owned(), name: name.to_owned(), object })
    }

    fn invalid(&self, kv: &KeyValue, why: &str, metrics: &Metrics) {
        let labels = vec![("resource", format!("{}/{}", self.config.group, self.config.resource))];
        metrics.kube_invalid_objects.get_or_create(&labels).inc();
        tracing::debug!(
            resource = %self.config.resource,
            key = %String::from_utf8_lossy(&kv.key),
            mod_revision = kv.meta.mod_revision,
            "value left out: {why}"
        );
    }
}

/// Every configured resource.
#[derive(Clone, Default)]
pub struct Resources(Arc<[Resource]>);

impl Resources {
    /// The resources of `configs`, over `namespaces` (validated: each
    /// names a configured namespace and has a valid key layout).
    pub fn new(configs: &[KubeResourceConfig], namespaces: &Namespaces) -> Self {
        let resources = configs
            .iter()
            .enumerate()
            .filter_map(|(i, config)| {
                Some(Resource {
                    template: KeyTemplate::parse(&config.key).ok()?,
                    namespace: Arc::clone(namespaces.get(&config.namespace)?),
                    api_version: format!("{}/{}", config.group, config.version),
                    index: u32::try_from(i).ok()?,
                    config: config.clone(),
                    added_lines: AddedLines::new(),
                })
            })
            .collect();
        Self(resources)
    }

    /// All of them, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    /// Whether none is configured (the surface is off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The resource `resource` of `group`/`version`.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<&Resource> {
        self.0
            .iter()
            .find(|r| r.config.group == group && r.config.version == version && r.config.resource == resource)
    }
}
