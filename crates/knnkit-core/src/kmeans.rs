//! k-means for IVF coarse quantizers and PQ codebooks: seeded k-means++ initialisation, Lloyd
//! iterations whose assignment step is the exact engine's fused k = 1 search (for rows of at
//! most [`SMALL_DIM`] values, PQ sub-vectors, a register-blocked direct scan instead), and
//! deterministic updates (per-chunk sums added in chunk order), so a seed gives the same
//! centroids whatever the thread count.
//!
//! Training runs on at most `max_points_per_centroid · k` sampled rows (as faiss does), and
//! k-means++, which is `k` sequential passes, on at most [`SEED_PER_CENTROID`]` · k` of them; an
//! empty cluster takes over half of the largest one (its centroid copied and nudged apart).

use std::borrow::Cow;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::flat::{self, Base, SearchParams};
use crate::metric::Metric;
use crate::pool;
use crate::rng::SplitMix64;
use crate::simd::{Level, Simd};

/// Parameters of a k-means run.
#[derive(Clone, Copy, Debug)]
pub struct KMeansParams {
    pub k: usize,
    pub iterations: usize,
    pub seed: u64,
    pub max_points_per_centroid: usize,
    /// Normalise centroids after each update (cosine: spherical k-means).
    pub spherical: bool,
    pub threads: usize,
}

impl KMeansParams {
    pub fn new(k: usize, seed: u64, threads: usize) -> Self {
        KMeansParams {
            k,
            iterations: 10,
            seed,
            max_points_per_centroid: 256,
            spherical: false,
            threads,
        }
    }
}

/// Scales `row` to unit length (a zero row stays zero): spherical k-means' centroid step.
pub(crate) fn normalize(row: &mut [f32]) {
    let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        row.iter_mut().for_each(|x| *x /= n);
    }
}

/// The index of the nearest row of `centroids` (k × d) for every row of `data`.
pub fn assign(data: &[f32], centroids: &[f32], d: usize, threads: usize) -> Result<Vec<u32>> {
    let params = SearchParams {
        threads,
        interrupt: None,
        bf16: true,
    };
    let res = flat::knn(
        &Base::new(centroids, d),
        data,
        1,
        Metric::SqEuclidean,
        &params,
    )?;
    Ok(res.indices.iter().map(|&i| i.max(0) as u32).collect())
}

/// Rows per centroid that k-means++ seeding draws from (at most).
pub const SEED_PER_CENTROID: usize = 32;

/// Widest rows assigned by [`assign_small`] instead of the exact engine.
pub const SMALL_DIM: usize = 16;

/// [`assign`] for short rows (PQ sub-vectors): every distance computed directly,
/// `Σ (x_t − c_t)²`, over centroids transposed to `d × k` so a block of them sits in vector
/// registers for the whole row (the exact engine's tiles, bounds and heaps cost more than the
/// arithmetic at this width). Ties go to the lower centroid, as in the engine; rows are
/// independent, so the result does not depend on the thread count.
pub fn assign_small(data: &[f32], centroids: &[f32], d: usize, threads: usize) -> Vec<u32> {
    let k = centroids.len() / d;
    let t = transpose(centroids, d);
    let mut labels = vec![0u32; data.len() / d];
    let simd = Simd::get();
    pool::install(threads, || {
        labels
            .par_chunks_mut(1024)
            .enumerate()
            .for_each(|(b, out)| {
                let rows = &data[b * 1024 * d..(b * 1024 + out.len()) * d];
                nearest_rows(
                    simd,
                    Strided {
                        data: rows,
                        stride: d,
                        offset: 0,
                    },
                    &t,
                    d,
                    k,
                    out,
                );
            })
    });
    labels
}

/// `centroids` (k × d, row-major) as d × k.
pub fn transpose(centroids: &[f32], d: usize) -> Vec<f32> {
    let k = centroids.len() / d;
    let mut t = vec![0f32; d * k];
    for (c, row) in centroids.chunks_exact(d).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * k + c] = v;
        }
    }
    t
}

/// Sub-vectors `data[i·stride + offset ..][..d]` of consecutive rows.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

/// Centroids per register block of [`nearest_rows`].
const BLOCK: usize = 32;

/// The nearest of `k` transposed centroids `t` (d × k) for each sub-vector of `rows`, compiled
/// for the token's vector width (the same arithmetic on every path: no fused multiply-adds).
pub fn nearest_rows(simd: Simd, rows: Strided<'_>, t: &[f32], d: usize, k: usize, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(rows: Strided<'_>, t: &[f32], d: usize, k: usize, out: &mut [u32]) {
            nearest_rows_body(rows, t, d, k, out)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(rows: Strided<'_>, t: &[f32], d: usize, k: usize, out: &mut [u32]) {
            nearest_rows_body(rows, t, d, k, out)
        }
        // SAFETY: the token proves the level's features were detected on this CPU.
        match simd.level() {
            Level::Avx512 => return unsafe { avx512(rows, t, d, k, out) },
            Level::Avx2 => return unsafe { avx2(rows, t, d, k, out) },
            _ => {}
        }
    }
    let _ = simd;
    nearest_rows_body(rows, t, d, k, out)
}

#[inline(always)]
fn nearest_rows_body(rows: Strided<'_>, t: &[f32], d: usize, k: usize, out: &mut [u32]) {
    for (i, l) in out.iter_mut().enumerate() {
        let x = &rows.data[i * rows.stride + rows.offset..][..d];
        let (mut best, mut best_v) = (0usize, f32::INFINITY);
        let mut c0 = 0;
        while c0 < k {
            let w = BLOCK.min(k - c0);
            let mut acc = [0f32; BLOCK];
            if w == BLOCK {
                for (j, &xj) in x.iter().enumerate() {
                    let col: &[f32; BLOCK] = t[j * k + c0..j * k + c0 + BLOCK].try_into().unwrap();
                    for u in 0..BLOCK {
                        let diff = xj - col[u];
                        acc[u] += diff * diff;
                    }
                }
            } else {
                for (j, &xj) in x.iter().enumerate() {
                    let col = &t[j * k + c0..j * k + c0 + w];
                    for (a, &c) in acc.iter_mut().zip(col) {
                        let diff = xj - c;
                        *a += diff * diff;
                    }
                }
            }
            for (u, &v) in acc[..w].iter().enumerate() {
                if v < best_v {
                    best_v = v;
                    best = c0 + u;
                }
            }
            c0 += w;
        }
        *l = best as u32;
    }
}

/// Trains `p.k` centroids on `data` (n × d, n ≥ k); returns them row-major.
pub fn kmeans(data: &[f32], d: usize, p: &KMeansParams) -> Result<Vec<f32>> {
    let n = data.len().checked_div(d).unwrap_or(0);
    if p.k == 0 || n < p.k {
        return Err(Error::param(
            "training data",
            format!("at least {} vectors (one per centroid)", p.k),
            n,
        ));
    }
    let mut rng = SplitMix64::new(p.seed);
    let data = sample_rows(
        data,
        d,
        p.k.saturating_mul(p.max_points_per_centroid).max(p.k),
        &mut rng,
    );
    let data = &data[..];
    let n = data.len() / d;
    // k-means++ is k sequential passes over its input: seed on a sample of SEED_PER_CENTROID
    // rows per centroid (Lloyd then runs on the whole training sample).
    let seed_data = sample_rows(data, d, p.k.saturating_mul(SEED_PER_CENTROID), &mut rng);
    let mut centroids = plus_plus(&seed_data, d, p.k, &mut rng, p.threads);
    if p.spherical {
        centroids.chunks_exact_mut(d).for_each(normalize);
    }
    for _ in 0..p.iterations {
        let labels = if d <= SMALL_DIM {
            assign_small(data, &centroids, d, p.threads)
        } else {
            assign(data, &centroids, d, p.threads)?
        };
        // Per-chunk sums, added in chunk order: deterministic whatever the threads.
        const CHUNK: usize = 4096;
        let partial: Vec<(Vec<f64>, Vec<usize>)> = pool::install(p.threads, || {
            labels
                .par_chunks(CHUNK)
                .enumerate()
                .map(|(c, ls)| {
                    let mut sums = vec![0f64; p.k * d];
                    let mut counts = vec![0usize; p.k];
                    for (i, &l) in ls.iter().enumerate() {
                        let row = &data[(c * CHUNK + i) * d..(c * CHUNK + i + 1) * d];
                        let s = &mut sums[l as usize * d..(l as usize + 1) * d];
                        s.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
                        counts[l as usize] += 1;
                    }
                    (sums, counts)
                })
                .collect()
        });
        let mut sums = vec![0f64; p.k * d];
        let mut counts = vec![0usize; p.k];
        for (s, c) in &partial {
            sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
        }
        for j in 0..p.k {
            if counts[j] > 0 {
                for t in 0..d {
                    centroids[j * d + t] = (sums[j * d + t] / counts[j] as f64) as f32;
                }
            }
        }
        // Empty clusters split the largest one.
        for j in 0..p.k {
            if counts[j] == 0 {
                let big = (0..p.k)
                    .max_by_key(|&i| (counts[i], usize::MAX - i))
                    .unwrap_or(0);
                for t in 0..d {
                    let c = centroids[big * d + t];
                    let eps = if c == 0.0 { 1e-6 } else { c.abs() * 1e-4 };
                    let sign = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
                    centroids[j * d + t] = c + sign * eps;
                    centroids[big * d + t] = c - sign * eps;
                }
                counts[j] = counts[big] / 2;
                counts[big] -= counts[j];
            }
        }
        if p.spherical {
            centroids.chunks_exact_mut(d).for_each(normalize);
        }
    }
    let _ = n;
    Ok(centroids)
}

/// At most `cap` rows of `data` (d columns), drawn without replacement and kept in their order;
/// all of them, borrowed, when there are no more than `cap`.
fn sample_rows<'a>(data: &'a [f32], d: usize, cap: usize, rng: &mut SplitMix64) -> Cow<'a, [f32]> {
    let n = data.len() / d;
    if n <= cap {
        return Cow::Borrowed(data);
    }
    let mut rows = rng.sample(n, cap);
    rows.sort_unstable();
    Cow::Owned(
        rows.iter()
            .flat_map(|&r| data[r * d..(r + 1) * d].iter().copied())
            .collect(),
    )
}

/// k-means++ seeding: each next centroid drawn with probability ∝ squared distance to the
/// nearest one chosen so far.
fn plus_plus(data: &[f32], d: usize, k: usize, rng: &mut SplitMix64, threads: usize) -> Vec<f32> {
    let n = data.len() / d;
    let sq = <f32 as crate::float::Float>::kernels().sqeuclidean;
    let mut centroids = Vec::with_capacity(k * d);
    let first = rng.below(n);
    centroids.extend_from_slice(&data[first * d..(first + 1) * d]);
    let mut best = vec![f32::INFINITY; n];
    for j in 1..k {
        let last = centroids[(j - 1) * d..j * d].to_vec();
        pool::install(threads, || {
            best.par_iter_mut().enumerate().for_each(|(i, b)| {
                let v = sq(&data[i * d..(i + 1) * d], &last);
                if v < *b {
                    *b = v;
                }
            })
        });
        let total: f64 = best.iter().map(|&v| v as f64).sum();
        let pick = if total > 0.0 {
            let mut r = rng.next_f64() * total;
            let mut chosen = n - 1;
            for (i, &v) in best.iter().enumerate() {
                r -= v as f64;
                if r <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.below(n)
        };
        centroids.extend_from_slice(&data[pick * d..(pick + 1) * d]);
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_assignment_equals_the_exact_engine() {
        let mut r = SplitMix64::new(5);
        for d in [1, 3, 8, 16] {
            let data: Vec<f32> = (0..3000 * d).map(|_| r.next_f64() as f32).collect();
            let cents: Vec<f32> = (0..37 * d).map(|_| r.next_f64() as f32).collect();
            let a = assign_small(&data, &cents, d, 2);
            let b = assign(&data, &cents, d, 1).unwrap();
            let sq = |i: usize, c: usize| -> f32 {
                (0..d)
                    .map(|t| (data[i * d + t] - cents[c * d + t]).powi(2))
                    .sum()
            };
            for i in 0..3000 {
                // equal labels, or equally near centroids (rounding of a tie)
                let (x, y) = (a[i] as usize, b[i] as usize);
                assert!(
                    x == y || (sq(i, x) - sq(i, y)).abs() <= 1e-6,
                    "d={d} row {i}"
                );
            }
            assert_eq!(a, assign_small(&data, &cents, d, 1));
            // every SIMD level computes the same labels
            let t = transpose(&cents, d);
            for simd in Simd::available_levels() {
                let mut out = vec![0u32; 3000];
                let rows = Strided {
                    data: &data,
                    stride: d,
                    offset: 0,
                };
                nearest_rows(simd, rows, &t, d, 37, &mut out);
                assert_eq!(out, a, "{simd:?}");
            }
        }
    }

    #[test]
    fn finds_separated_clusters_deterministically() {
        // Three tight clusters on a line.
        let mut data = Vec::new();
        for c in [0.0f32, 100.0, 200.0] {
            for i in 0..50 {
                data.extend_from_slice(&[c + (i % 5) as f32 * 0.1, (i % 3) as f32 * 0.1]);
            }
        }
        let a = kmeans(&data, 2, &KMeansParams::new(3, 1, 1)).unwrap();
        let b = kmeans(&data, 2, &KMeansParams::new(3, 1, 3)).unwrap();
        assert_eq!(a, b, "same seed, other thread count, same centroids");
        let mut xs: Vec<f32> = a.chunks_exact(2).map(|c| c[0]).collect();
        xs.sort_by(f32::total_cmp);
        for (x, want) in xs.iter().zip([0.2f32, 100.2, 200.2]) {
            assert!((x - want).abs() < 0.5, "{xs:?}");
        }
    }

    #[test]
    fn too_few_points_is_an_error() {
        assert!(kmeans(&[1.0, 2.0], 2, &KMeansParams::new(2, 0, 1)).is_err());
    }
}
