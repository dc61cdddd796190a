//! The metric registry: every metric name, its aliases, which engines serve it, and how each
//! engine's ranking key maps to the distance — written once, read by the Rust parsers
//! ([`super::Metric::parse`], the error messages) and by Python (`knnkit._metrics`, through
//! `_core.metrics()`).
//!
//! Keys (smaller is closer; see [`super::Metric`]): the exact engine and the trees rank by the
//! *exact key* ([`super::Metric::key_to_distance`]); HNSW and IVF rank by the *index key* of
//! their [`super::Space`] ([`super::Metric::index_key_to_distance`]). The two differ for cosine
//! only: the exact key is the distance 1 − cos, the index key is −cos.

/// A search engine that serves some of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The exact engine (`FlatIndex`, brute-force estimators).
    Exact,
    /// The KD and ball trees.
    Tree,
    /// The approximate indexes (HNSW, IVF).
    Approximate,
    /// The PyTorch backend.
    Torch,
}

impl Engine {
    /// Every engine, in the order the registry lists them.
    pub const ALL: [Engine; 4] = [
        Engine::Exact,
        Engine::Tree,
        Engine::Approximate,
        Engine::Torch,
    ];

    /// Name as Python spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Exact => "exact",
            Engine::Tree => "tree",
            Engine::Approximate => "approximate",
            Engine::Torch => "torch",
        }
    }
}

/// How a key maps to the distance (`key → distance`; the inverse maps a radius to a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyMap {
    /// The key is the distance.
    Identity,
    /// The key is the squared distance.
    Square,
    /// The key is Σ|d|ᵖ: the distance is its p-th root.
    Power,
    /// The key is the negated similarity.
    Negate,
    /// The key is the distance minus one (cosine on the approximate indexes: −cos).
    MinusOne,
}

impl KeyMap {
    /// Name as Python spells it.
    pub fn name(self) -> &'static str {
        match self {
            KeyMap::Identity => "identity",
            KeyMap::Square => "square",
            KeyMap::Power => "power",
            KeyMap::Negate => "negate",
            KeyMap::MinusOne => "minus_one",
        }
    }
}

/// One metric of the registry.
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    /// Canonical name.
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// Engines that serve it.
    pub engines: &'static [Engine],
    /// Larger values are closer (returned largest first).
    pub similarity: bool,
    /// Computed from dot products and norms.
    pub dot_based: bool,
    /// Takes the Minkowski exponent `p`.
    pub uses_p: bool,
    /// The exact engine's key (also the trees' reduced distance).
    pub exact_key: KeyMap,
    /// The approximate indexes' key (`None` where they do not serve the metric).
    pub index_key: Option<KeyMap>,
}

use Engine::{Approximate, Exact, Torch, Tree};

/// Every metric, in the order error messages list them.
pub const REGISTRY: &[MetricInfo] = &[
    MetricInfo {
        name: "euclidean",
        aliases: &["l2"],
        engines: &[Exact, Tree, Approximate, Torch],
        similarity: false,
        dot_based: true,
        uses_p: false,
        exact_key: KeyMap::Square,
        index_key: Some(KeyMap::Square),
    },
    MetricInfo {
        name: "sqeuclidean",
        aliases: &[],
        engines: &[Exact, Approximate, Torch],
        similarity: false,
        dot_based: true,
        uses_p: false,
        exact_key: KeyMap::Identity,
        index_key: Some(KeyMap::Identity),
    },
    MetricInfo {
        name: "inner_product",
        aliases: &["ip"],
        engines: &[Exact, Approximate, Torch],
        similarity: true,
        dot_based: true,
        uses_p: false,
        exact_key: KeyMap::Negate,
        index_key: Some(KeyMap::Negate),
    },
    MetricInfo {
        name: "cosine",
        aliases: &[],
        engines: &[Exact, Approximate, Torch],
        similarity: false,
        dot_based: true,
        uses_p: false,
        exact_key: KeyMap::Identity,
        index_key: Some(KeyMap::MinusOne),
    },
    MetricInfo {
        name: "manhattan",
        aliases: &["cityblock", "l1"],
        engines: &[Exact, Tree, Torch],
        similarity: false,
        dot_based: false,
        uses_p: false,
        exact_key: KeyMap::Identity,
        index_key: None,
    },
    MetricInfo {
        name: "chebyshev",
        aliases: &["infinity"],
        engines: &[Exact, Tree, Torch],
        similarity: false,
        dot_based: false,
        uses_p: false,
        exact_key: KeyMap::Identity,
        index_key: None,
    },
    MetricInfo {
        name: "minkowski",
        aliases: &[],
        engines: &[Exact, Tree, Torch],
        similarity: false,
        dot_based: false,
        uses_p: true,
        exact_key: KeyMap::Power,
        index_key: None,
    },
    MetricInfo {
        name: "hamming",
        aliases: &[],
        engines: &[Exact],
        similarity: false,
        dot_based: false,
        uses_p: false,
        exact_key: KeyMap::Identity,
        index_key: None,
    },
];

/// The registry entry of a name or alias.
pub fn lookup(name: &str) -> Option<&'static MetricInfo> {
    REGISTRY
        .iter()
        .find(|m| m.name == name || m.aliases.contains(&name))
}

/// Number of names and aliases.
const fn count_names() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < REGISTRY.len() {
        n += 1 + REGISTRY[i].aliases.len();
        i += 1;
    }
    n
}

/// Every name then its aliases, metric by metric.
const fn all_names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut k) = (0, 0);
    while i < REGISTRY.len() {
        out[k] = REGISTRY[i].name;
        k += 1;
        let mut j = 0;
        while j < REGISTRY[i].aliases.len() {
            out[k] = REGISTRY[i].aliases[j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// Every accepted name (canonical names, each followed by its aliases).
pub const NAMES: &[&str] = &all_names::<{ count_names() }>();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Metric, Space};

    #[test]
    fn every_name_parses_to_its_entry() {
        for &name in NAMES {
            let m = Metric::parse(name, 3.0).unwrap();
            let info = lookup(name).unwrap();
            assert_eq!(m.name(), info.name, "{name}");
            assert_eq!(m.is_dot_based(), info.dot_based, "{name}");
            assert_eq!(m.is_similarity(), info.similarity, "{name}");
            // the approximate indexes serve exactly the metrics with an index key
            assert_eq!(Space::of(m).is_ok(), info.index_key.is_some(), "{name}");
            assert_eq!(
                info.index_key.is_some(),
                info.engines.contains(&Engine::Approximate)
            );
        }
        assert!(lookup("bogus").is_none());
    }

    #[test]
    fn key_maps_match_the_conversions() {
        let apply = |k: KeyMap, key: f64, p: f64| match k {
            KeyMap::Identity => key,
            KeyMap::Square => key.sqrt(),
            KeyMap::Power => key.powf(1.0 / p),
            KeyMap::Negate => -key,
            KeyMap::MinusOne => key + 1.0,
        };
        for info in REGISTRY {
            let m = Metric::parse(info.name, 3.0).unwrap();
            for key in [0.0f64, 0.25, 2.0] {
                assert_eq!(
                    m.key_to_distance(key),
                    apply(info.exact_key, key, 3.0),
                    "{}",
                    info.name
                );
                if let Some(k) = info.index_key {
                    let key = key as f32;
                    assert_eq!(
                        m.index_key_to_distance(key),
                        apply(k, key as f64, 3.0) as f32,
                        "{}",
                        info.name
                    );
                }
            }
        }
    }
}
