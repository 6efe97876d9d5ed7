//! Human-readable units in the configuration: durations (`"250ms"`, `"5m"`)
//! and byte sizes (`"512MiB"`, or a plain number of bytes).
//!
//! Both deserialize from strings so that figment reports a bad value together
//! with the key it was found under (`cache.ttl`), and both serialize back to
//! the same human form so a loaded config can be printed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as a human string (`"30s"`, `"1h 30m"`, `"250ms"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Builds a duration from whole seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Builds a duration from milliseconds.
    pub const fn millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"250ms\", \"30s\", \"5m\""))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"30s\" or \"5m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A size in bytes written as a number or a human string (`"64KiB"`, `"1 GB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Builds a size from mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// Builds a size from kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        bytesize::ByteSize::from_str(s.trim())
            .map(|b| Self(b.as_u64()))
            .map_err(|e| format!("invalid size {s:?} ({e}); write e.g. \"64KiB\", \"512MiB\""))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 65536, \"64KiB\" or \"512MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An address to listen on: `IP:PORT`, or `HOST:PORT` with the name
/// resolved now (`localhost:8080`; an IPv4 address when the name has one).
///
/// # Errors
/// What to write instead, naming the text given.
pub fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || {
        format!(
            "{text:?} is not an address to listen on: write HOST:PORT such as 127.0.0.1:8080, localhost:8080 or 0.0.0.0:8080"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addrs: Vec<std::net::SocketAddr> = (host, port).to_socket_addrs().map_err(|_| bad())?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or_else(|| addrs.first()).copied().ok_or_else(bad)
}

/// Deserializes `listen` (see [`listen_addr`]).
pub fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = std::net::SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address such as \"127.0.0.1:8080\" or \"localhost:8080\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            listen_addr(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V)
}

/// Deserializes a list of strings from either a list or one comma-separated
/// string, so `GATEWAY_ETCD__ENDPOINTS=http://a:2379,http://b:2379` works.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => split_list(&s),
        OneOrMany::Many(v) => v,
    })
}

/// Splits a comma-separated list, trimming blanks and dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Scalars written in the environment are parsed by type (`GATEWAY_X=123` is a
/// number), so string fields accept numbers and booleans as their text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Text(s) => s,
            Scalar::Unsigned(n) => n.to_string(),
            Scalar::Signed(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Deserializes a string field, accepting a number or boolean as its text.
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(String::from)
}

/// Deserializes an optional string field, accepting a number or boolean as its text.
pub fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<Scalar>::deserialize(d).map(|s| s.map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_human_forms() {
        assert_eq!("250ms".parse::<HumanDuration>().unwrap(), HumanDuration::millis(250));
        assert_eq!("5m".parse::<HumanDuration>().unwrap(), HumanDuration::secs(300));
        assert_eq!(" 1h 30m ".parse::<HumanDuration>().unwrap(), HumanDuration::secs(5400));
        let err = "soon".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
    }

    #[test]
    fn sizes_parse_numbers_and_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(512));
        assert_eq!("64 KiB".parse::<ByteSize>().unwrap(), ByteSize::kib(64));
        assert_eq!("1000".parse::<ByteSize>().unwrap(), ByteSize(1000));
        assert!("lots".parse::<ByteSize>().is_err());
    }

    #[test]
    fn listen_addresses_take_host_names() {
        assert_eq!(listen_addr("127.0.0.1:8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(listen_addr("localhost:8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(listen_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        let err = listen_addr("8080").unwrap_err();
        assert_eq!(
            err,
            "\"8080\" is not an address to listen on: write HOST:PORT such as 127.0.0.1:8080, localhost:8080 or \
             0.0.0.0:8080"
        );
        assert!(listen_addr("localhost:http").is_err());
    }

    #[test]
    fn lists_split_on_commas() {
        assert_eq!(split_list(" a, b,,c "), vec!["a", "b", "c"]);
    }
}
