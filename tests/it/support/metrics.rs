//! Reading the gateway's `/metrics` in tests.

use std::collections::BTreeMap;

use super::Gateway;
use super::http::get;

/// Parsed samples: (name, labels) -> value.
pub type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// The gateway's current samples.
pub async fn scrape(gw: &Gateway) -> Samples {
    parse(&String::from_utf8(get(&gw.url("/metrics")).await.body).expect("UTF-8 exposition"))
}

/// Samples of an exposition: (name, labels) -> value. Panics on a malformed line.
pub fn parse(text: &str) -> Samples {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("malformed labels in {line:?}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) =
                            pair.split_once("=\"").unwrap_or_else(|| panic!("malformed label in {line:?}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.insert((name, labels), value);
    }
    samples
}

pub fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}
