//! Metrics: names, the internal "key" each search ranks by, and conversion back to distances.
//!
//! Every search ranks candidates by a *key* where smaller is better, cheaper than the distance but
//! monotone in it: squared L2 for `euclidean`, Σ|d|ᵖ for `minkowski`, −⟨x,y⟩ for `inner_product`
//! (a similarity, returned largest first). [`Metric::key_to_distance`] maps a key back to the
//! metric's own units once per returned neighbour. Names, aliases and which engine serves which
//! metric live in one table, [`registry`]; the approximate indexes rank by their [`Space`]'s key
//! ([`Metric::index_key_to_distance`]).

pub mod kernels;
pub mod nan_euclidean;
pub mod registry;

use crate::error::{Error, Result};
use crate::float::Float;

/// A metric the Rust core computes natively.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// ‖x − y‖²
    SqEuclidean,
    /// ‖x − y‖
    Euclidean,
    /// ⟨x, y⟩, a similarity: larger is closer.
    InnerProduct,
    /// 1 − ⟨x, y⟩ / (‖x‖‖y‖); a zero vector is at distance 1 from everything.
    Cosine,
    /// Σ |xᵢ − yᵢ|
    Manhattan,
    /// max |xᵢ − yᵢ|
    Chebyshev,
    /// (Σ |xᵢ − yᵢ|ᵖ)^(1/p), p ≥ 1 finite.
    Minkowski(f64),
    /// Fraction of coordinates that differ.
    Hamming,
}

impl Metric {
    /// Names accepted by [`Metric::parse`] (the registry's names and aliases).
    pub const NAMES: &'static [&'static str] = registry::NAMES;

    /// Parses a metric name; `p` is used by `minkowski` only, and p = 1, 2, ∞ are rewritten to
    /// manhattan, euclidean and chebyshev as scikit-learn does.
    pub fn parse(name: &str, p: f64) -> Result<Self> {
        let canonical = registry::lookup(name)
            .ok_or_else(|| Error::UnknownMetric(name.to_string()))?
            .name;
        Ok(match canonical {
            "sqeuclidean" => Metric::SqEuclidean,
            "euclidean" => Metric::Euclidean,
            "inner_product" => Metric::InnerProduct,
            "cosine" => Metric::Cosine,
            "manhattan" => Metric::Manhattan,
            "chebyshev" => Metric::Chebyshev,
            "hamming" => Metric::Hamming,
            "minkowski" => {
                if p.is_nan() || p < 1.0 {
                    return Err(Error::param("p", "p >= 1 for minkowski", p));
                }
                if p == 1.0 {
                    Metric::Manhattan
                } else if p == 2.0 {
                    Metric::Euclidean
                } else if p.is_infinite() {
                    Metric::Chebyshev
                } else {
                    Metric::Minkowski(p)
                }
            }
            other => return Err(Error::UnknownMetric(other.to_string())),
        })
    }

    /// Canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::SqEuclidean => "sqeuclidean",
            Metric::Euclidean => "euclidean",
            Metric::InnerProduct => "inner_product",
            Metric::Cosine => "cosine",
            Metric::Manhattan => "manhattan",
            Metric::Chebyshev => "chebyshev",
            Metric::Minkowski(_) => "minkowski",
            Metric::Hamming => "hamming",
        }
    }

    /// True for metrics computed from dot products and norms (searched with the tiled
    /// matrix-product kernel).
    pub fn is_dot_based(&self) -> bool {
        matches!(
            self,
            Metric::SqEuclidean | Metric::Euclidean | Metric::InnerProduct | Metric::Cosine
        )
    }

    /// True when the returned values are similarities (larger is closer).
    pub fn is_similarity(&self) -> bool {
        matches!(self, Metric::InnerProduct)
    }

    /// True when the search needs the squared norms of the base rows.
    pub fn needs_norms(&self) -> bool {
        matches!(
            self,
            Metric::SqEuclidean | Metric::Euclidean | Metric::Cosine
        )
    }

    /// Exact key between two vectors, computed directly (no expanded form). `na`, `nb` are the
    /// squared norms (used by cosine only).
    #[inline]
    pub fn key<T: Float>(&self, a: &[T], b: &[T], na: T, nb: T) -> T {
        let k = T::kernels();
        match *self {
            Metric::SqEuclidean | Metric::Euclidean => (k.sqeuclidean)(a, b),
            Metric::InnerProduct => -(k.dot)(a, b),
            Metric::Cosine => cosine_key((k.dot)(a, b), na, nb),
            Metric::Manhattan => (k.manhattan)(a, b),
            Metric::Chebyshev => (k.chebyshev)(a, b),
            Metric::Minkowski(p) => kernels::minkowski_reduced(a, b, T::from_f64(p)),
            Metric::Hamming => kernels::hamming(a, b),
        }
    }

    /// [`Metric::canonical_key`] of `a` against `L` rows at once (each as long as `a`): the same
    /// operations in the same order for each row, so the same bits, with the rows' dependency
    /// chains interleaved (one in-order f64 sum is latency-bound; `L` of them overlap).
    pub fn canonical_keys<T: Float, const L: usize>(&self, a: &[T], rows: [&[T]; L]) -> [f64; L] {
        let d = a.len();
        match *self {
            Metric::SqEuclidean | Metric::Euclidean | Metric::InnerProduct => {
                let rows = rows.map(|r| &r[..d]);
                let mut s = [0f64; L];
                let sq = *self != Metric::InnerProduct;
                for (i, &x) in a.iter().enumerate() {
                    let x = x.to_f64();
                    for (acc, r) in s.iter_mut().zip(&rows) {
                        let y = r[i].to_f64();
                        if sq {
                            let t = x - y;
                            *acc += t * t;
                        } else {
                            *acc += x * y;
                        }
                    }
                }
                if !sq {
                    s.iter_mut().for_each(|v| *v = -*v);
                }
                s
            }
            _ => rows.map(|r| self.canonical_key(a, r)),
        }
    }

    /// The *canonical* key between two vectors: coordinates summed in order, in f64 (float32
    /// values widened exactly), one multiply and one add per step, never fused — scikit-learn's
    /// tree arithmetic. Unlike [`Metric::key`], whose SIMD build fixes a summation order per
    /// level, this is the same number on every CPU, so every exact engine ranks by it: results,
    /// ties included, do not depend on the CPU, and float32 data rank as scikit-learn ranks them
    /// (in float64).
    ///
    /// ```
    /// use knnkit_core::metric::Metric;
    /// let (a, b) = ([1.0f32, 2.0, 3.0], [0.5f32, 2.0, 1.0]);
    /// assert_eq!(Metric::SqEuclidean.canonical_key(&a, &b), 4.25);
    /// assert_eq!(Metric::Manhattan.canonical_key(&a, &b), 2.5);
    /// ```
    pub fn canonical_key<T: Float>(&self, a: &[T], b: &[T]) -> f64 {
        let pairs = a.iter().zip(b).map(|(&x, &y)| (x.to_f64(), y.to_f64()));
        match *self {
            Metric::SqEuclidean | Metric::Euclidean => {
                let mut s = 0.0f64;
                for (x, y) in pairs {
                    let t = x - y;
                    s += t * t;
                }
                s
            }
            Metric::InnerProduct => {
                let mut s = 0.0f64;
                for (x, y) in pairs {
                    s += x * y;
                }
                -s
            }
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
                for (x, y) in pairs {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                cosine_key(dot, na, nb)
            }
            Metric::Manhattan => {
                let mut s = 0.0f64;
                for (x, y) in pairs {
                    s += (x - y).abs();
                }
                s
            }
            Metric::Chebyshev => {
                let mut s = 0.0f64;
                for (x, y) in pairs {
                    s = s.max((x - y).abs());
                }
                s
            }
            Metric::Minkowski(p) => {
                let mut s = 0.0f64;
                for (x, y) in pairs {
                    s += (x - y).abs().powf(p);
                }
                s
            }
            Metric::Hamming => kernels::hamming(a, b).to_f64(),
        }
    }

    /// How far [`Metric::key`] (any SIMD level, in `T`) and [`Metric::canonical_key`] can be
    /// apart, as a bound used to screen candidates before the canonical key is computed:
    /// `Relative(f)` — `key ≤ canonical · f` up to `f`'s margin (non-negative keys);
    /// `Absolute(a)` — within `a`; `Dot(c)` — within `c · ‖x‖‖y‖` (inner product).
    pub fn screen_slack<T: Float>(&self, d: usize) -> Slack {
        // each of the two computations is within (d + 4)·ε of the exact value (ε of its own
        // type; pow adds a few ulps per term for minkowski); the margins double that
        let g = (d as f64 + 8.0) * (T::EPSILON.to_f64() + f64::EPSILON);
        match *self {
            Metric::InnerProduct => Slack::Dot(4.0 * g),
            Metric::Cosine => Slack::Absolute(8.0 * g),
            Metric::Minkowski(p) => Slack::Relative(1.0 + 4.0 * g * (2.0 + p.abs())),
            _ => Slack::Relative(1.0 + 4.0 * g),
        }
    }

    /// Key from a dot product and squared norms (dot-based metrics only).
    #[inline(always)]
    pub fn key_from_dot<T: Float>(&self, dot: T, na: T, nb: T) -> T {
        match *self {
            Metric::SqEuclidean | Metric::Euclidean => {
                let v = na + nb - (dot + dot);
                if v > T::ZERO {
                    v
                } else {
                    T::ZERO
                }
            }
            Metric::InnerProduct => -dot,
            _ => cosine_key(dot, na, nb),
        }
    }

    /// Maps a key back to the metric's own units.
    #[inline]
    pub fn key_to_distance<T: Float>(&self, key: T) -> T {
        match *self {
            Metric::Euclidean => key.sqrt(),
            Metric::InnerProduct => -key,
            Metric::Minkowski(p) => key.powf(T::from_f64(1.0 / p)),
            _ => key,
        }
    }

    /// Maps a key of the approximate indexes ([`Space`]: −cos for cosine, where the exact key is
    /// 1 − cos) back to the metric's units; rounding below zero is clamped.
    #[inline]
    pub fn index_key_to_distance(&self, key: f32) -> f32 {
        match self {
            Metric::SqEuclidean => key.max(0.0),
            Metric::Euclidean => key.max(0.0).sqrt(),
            Metric::InnerProduct => -key,
            _ => (1.0 + key).max(0.0),
        }
    }

    /// Maps a distance (or similarity, for inner product) threshold to the key space, for
    /// pre-filtering; the final test is always made on the distance itself.
    pub fn distance_to_key<T: Float>(&self, d: T) -> T {
        match *self {
            Metric::Euclidean => d * d,
            Metric::InnerProduct => -d,
            Metric::Minkowski(p) => d.powf(T::from_f64(p)),
            _ => d,
        }
    }

    /// The value returned for a missing neighbour (+inf, or −inf for a similarity).
    pub fn missing<T: Float>(&self) -> T {
        if self.is_similarity() {
            -T::INFINITY
        } else {
            T::INFINITY
        }
    }
}

/// A bound on |[`Metric::key`] − [`Metric::canonical_key`]| (see [`Metric::screen_slack`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Slack {
    /// Multiplicative, for non-negative keys.
    Relative(f64),
    /// Additive.
    Absolute(f64),
    /// Additive, times the product of the two vectors' norms.
    Dot(f64),
}

/// What distance the approximate indexes (HNSW, IVF) rank by; the key is ‖q − x‖² (L2),
/// −⟨q, x⟩ (Ip) or −⟨q, x⟩/(‖q‖‖x‖) (Cosine, on normalised queries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    L2,
    Ip,
    Cosine,
}

impl Space {
    /// The space of a metric the approximate indexes serve (an error naming them otherwise).
    pub fn of(metric: Metric) -> Result<Space> {
        Ok(match metric {
            Metric::SqEuclidean | Metric::Euclidean => Space::L2,
            Metric::InnerProduct => Space::Ip,
            Metric::Cosine => Space::Cosine,
            other => {
                let served: Vec<&str> = registry::REGISTRY
                    .iter()
                    .filter(|m| m.engines.contains(&registry::Engine::Approximate))
                    .map(|m| m.name)
                    .collect();
                return Err(Error::param(
                    "metric",
                    format!("one of {}", served.join(", ")),
                    other.name(),
                ));
            }
        })
    }
}

#[inline(always)]
fn cosine_key<T: Float>(dot: T, na: T, nb: T) -> T {
    // sqrt(na * nb) rather than sqrt(na) * sqrt(nb): for a = b it equals na exactly, so a vector
    // is at distance exactly 0 from itself. The product can leave the normal range (float32
    // vectors with |x| beyond ~1e9 or below ~1e-10): then take the roots first, except for equal
    // norms, where the root is na itself.
    let prod = na * nb;
    let denom = if prod.is_finite() && prod >= T::MIN_POSITIVE {
        prod.sqrt()
    } else if na == nb {
        na
    } else {
        na.sqrt() * nb.sqrt()
    };
    if denom > T::ZERO {
        let v = T::ONE - dot / denom;
        if v > T::ZERO {
            v
        } else {
            T::ZERO
        }
    } else {
        T::ONE
    }
}

/// Squared norms of the rows of `data` (n × d), as the dot-based searches need them.
pub fn squared_norms<T: Float>(data: &[T], d: usize) -> Vec<T> {
    let dot = T::kernels().dot;
    if d == 0 {
        return vec![T::ZERO; data.len()];
    }
    data.chunks_exact(d).map(|r| dot(r, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rewrites_minkowski() {
        assert_eq!(Metric::parse("minkowski", 1.0).unwrap(), Metric::Manhattan);
        assert_eq!(Metric::parse("minkowski", 2.0).unwrap(), Metric::Euclidean);
        assert_eq!(
            Metric::parse("minkowski", f64::INFINITY).unwrap(),
            Metric::Chebyshev
        );
        assert_eq!(
            Metric::parse("minkowski", 3.0).unwrap(),
            Metric::Minkowski(3.0)
        );
        assert!(Metric::parse("minkowski", 0.5).is_err());
        let e = Metric::parse("bogus", 2.0).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("euclidean"), "{e}");
    }

    #[test]
    fn cosine_survives_extreme_scales() {
        // na · nb overflows (or underflows) float32 although every norm is representable.
        let a = [3.0f32, 4.0, 0.0];
        let b = [4.0f32, 3.0, 0.0]; // cosine similarity 24/25
        for scale in [1e-15f32, 1e-12, 1e-9, 1.0, 1e9, 1e12, 1e15] {
            let (a, b) = (a.map(|x| x * scale), b.map(|x| x * scale));
            let (na, nb) = (squared_norms(&a, 3)[0], squared_norms(&b, 3)[0]);
            let key = Metric::Cosine.key(&a, &b, na, nb);
            assert!((key - 0.04).abs() < 1e-5, "scale {scale}: {key}");
            assert_eq!(
                Metric::Cosine.key(&a, &a, na, na).abs(),
                0.0,
                "scale {scale}"
            );
            assert_eq!(Metric::Cosine.key(&a, &[0.0; 3], na, 0.0), 1.0);
        }
    }

    #[test]
    fn cosine_self_is_zero() {
        let a = [0.3f32, -1.7, 2.9, 1e-3];
        let n = squared_norms(&a, 4)[0];
        assert_eq!(Metric::Cosine.key(&a, &a, n, n), 0.0);
        let z = [0.0f32; 4];
        assert_eq!(Metric::Cosine.key(&a, &z, n, 0.0), 1.0);
    }
}
