//! PQ: product quantization (Jégou, Douze & Schmid, 2011).
//!
//! A vector is cut into `m` sub-vectors of `dsub = d / m` values; each is replaced by the index
//! of its nearest centroid in a sub-codebook of `ksub = 2^nbits` centroids (one byte per
//! sub-vector here, so `nbits ≤ 8`). A query builds a lookup table once — for each sub-space the
//! squared distance (or dot product) of its sub-vector to every centroid — and a code then
//! scores with `m` table lookups: Σⱼ LUT[j][codeⱼ].

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kmeans::{kmeans, KMeansParams};

/// A trained product quantizer.
#[derive(Clone, Debug, PartialEq)]
pub struct Pq {
    pub d: usize,
    pub m: usize,
    pub nbits: usize,
    /// `m × ksub × dsub` centroids.
    pub centroids: Vec<f32>,
    /// The same, transposed per sub-space (`m × dsub × ksub`): lookup tables are then built
    /// with contiguous, vectorised loops over the centroids.
    transposed: Vec<f32>,
    /// ‖centroid‖² (`m × ksub`).
    norms: Vec<f32>,
}

impl Pq {
    /// Checks `m` and `nbits` against `d`.
    pub fn check(d: usize, m: usize, nbits: usize) -> Result<()> {
        if m == 0 || !d.is_multiple_of(m) {
            return Err(Error::param(
                "pq m",
                format!("a divisor of the dimension {d}"),
                m,
            ));
        }
        if !(1..=8).contains(&nbits) {
            return Err(Error::param("nbits", "an integer in [1, 8]", nbits));
        }
        Ok(())
    }

    /// Trains the sub-codebooks on `data` (n × d, n ≥ 2^nbits).
    pub fn train(
        data: &[f32],
        d: usize,
        m: usize,
        nbits: usize,
        seed: u64,
        threads: usize,
    ) -> Result<Self> {
        Self::check(d, m, nbits)?;
        let n = data.len() / d;
        let (dsub, ksub) = (d / m, 1usize << nbits);
        let mut centroids = Vec::with_capacity(m * ksub * dsub);
        for j in 0..m {
            let sub: Vec<f32> = (0..n)
                .flat_map(|i| {
                    data[i * d + j * dsub..i * d + (j + 1) * dsub]
                        .iter()
                        .copied()
                })
                .collect();
            let mut p = KMeansParams::new(ksub, seed.wrapping_add(j as u64), threads);
            p.iterations = 15;
            centroids.extend(kmeans(&sub, dsub, &p)?);
        }
        Ok(Self::with_tables(d, m, nbits, centroids))
    }

    fn with_tables(d: usize, m: usize, nbits: usize, centroids: Vec<f32>) -> Self {
        let (ksub, dsub) = (1usize << nbits, d / m);
        let mut transposed = vec![0f32; centroids.len()];
        let mut norms = vec![0f32; m * ksub];
        for j in 0..m {
            for c in 0..ksub {
                for t in 0..dsub {
                    let v = centroids[(j * ksub + c) * dsub + t];
                    transposed[(j * dsub + t) * ksub + c] = v;
                    norms[j * ksub + c] += v * v;
                }
            }
        }
        Pq {
            d,
            m,
            nbits,
            centroids,
            transposed,
            norms,
        }
    }

    /// A quantizer from stored parts (validated).
    pub fn from_parts(d: usize, m: usize, nbits: usize, centroids: Vec<f32>) -> Result<Self> {
        Self::check(d, m, nbits)?;
        if centroids.len() != (1usize << nbits) * d || !centroids.iter().all(|v| v.is_finite()) {
            return Err(Error::Shape {
                name: "pq centroids",
                expected: (1usize << nbits) * d,
                got: centroids.len(),
            });
        }
        Ok(Self::with_tables(d, m, nbits, centroids))
    }

    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }

    pub fn dsub(&self) -> usize {
        self.d / self.m
    }

    fn centroid(&self, j: usize, c: usize) -> &[f32] {
        let (ksub, dsub) = (self.ksub(), self.dsub());
        let s = (j * ksub + c) * dsub;
        &self.centroids[s..s + dsub]
    }

    /// Encodes `x` (length d) into `m` bytes.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        let sq = f32::kernels().sqeuclidean;
        let dsub = self.dsub();
        for (j, o) in out.iter_mut().enumerate().take(self.m) {
            let sub = &x[j * dsub..(j + 1) * dsub];
            let mut best = (f32::INFINITY, 0usize);
            for c in 0..self.ksub() {
                let v = sq(sub, self.centroid(j, c));
                if v < best.0 {
                    best = (v, c);
                }
            }
            *o = best.1 as u8;
        }
    }

    /// Encodes many vectors (row-major, `d` columns) at once: `m` bytes per row, the same
    /// codes as [`Pq::encode`] up to ties between equally near centroids (lower index first).
    /// Each sub-space is a register-blocked nearest-centroid scan over the transposed codebook.
    pub fn encode_batch(&self, x: &[f32], threads: usize) -> Vec<u8> {
        use crate::kmeans::{nearest_rows, Strided};
        use rayon::prelude::*;

        const ROWS: usize = 1024;
        let (m, d, dsub, ksub) = (self.m, self.d, self.dsub(), self.ksub());
        let n = x.len() / d;
        let mut codes = vec![0u8; n * m];
        let simd = crate::simd::Simd::get();
        crate::pool::install(threads, || {
            codes
                .par_chunks_mut(ROWS * m)
                .enumerate()
                .for_each(|(b, out)| {
                    let rows = out.len() / m;
                    let data = &x[b * ROWS * d..(b * ROWS + rows) * d];
                    let mut labels = vec![0u32; rows];
                    for j in 0..m {
                        let t = &self.transposed[j * dsub * ksub..(j + 1) * dsub * ksub];
                        let view = Strided {
                            data,
                            stride: d,
                            offset: j * dsub,
                        };
                        nearest_rows(simd, view, t, dsub, ksub, &mut labels);
                        for (i, &l) in labels.iter().enumerate() {
                            out[i * m + j] = l as u8;
                        }
                    }
                })
        });
        codes
    }

    /// Decodes `m` bytes into a vector.
    pub fn decode(&self, code: &[u8], out: &mut Vec<f32>) {
        out.clear();
        for (j, &c) in code.iter().enumerate().take(self.m) {
            out.extend_from_slice(self.centroid(j, c as usize));
        }
    }

    /// Lookup table of squared distances from `q`'s sub-vectors to every centroid (m × ksub),
    /// as ‖q_j‖² + ‖c‖² − 2⟨q_j, c⟩.
    pub fn lut_l2(&self, q: &[f32], lut: &mut Vec<f32>) {
        self.lut_dot(q, lut);
        let (ksub, dsub) = (self.ksub(), self.dsub());
        for j in 0..self.m {
            let qn: f32 = q[j * dsub..(j + 1) * dsub].iter().map(|v| v * v).sum();
            let row = &mut lut[j * ksub..(j + 1) * ksub];
            for (l, &cn) in row.iter_mut().zip(&self.norms[j * ksub..(j + 1) * ksub]) {
                *l = qn + cn - 2.0 * *l;
            }
        }
    }

    /// Lookup table of dot products of `q`'s sub-vectors with every centroid (m × ksub).
    pub fn lut_dot(&self, q: &[f32], lut: &mut Vec<f32>) {
        lut.clear();
        lut.resize(self.m * self.ksub(), 0.0);
        #[cfg(target_arch = "x86_64")]
        {
            use crate::simd::{Level, Simd};
            match Simd::get().level() {
                // SAFETY: the process's token proves the level's features were detected.
                Level::Avx512 => return unsafe { self.lut_dot_avx512(q, lut) },
                Level::Avx2 => return unsafe { self.lut_dot_avx2(q, lut) },
                _ => {}
            }
        }
        self.lut_dot_lanes(q, lut)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn lut_dot_avx512(&self, q: &[f32], lut: &mut [f32]) {
        self.lut_dot_lanes(q, lut)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lut_dot_avx2(&self, q: &[f32], lut: &mut [f32]) {
        self.lut_dot_lanes(q, lut)
    }

    /// The table loop, inlined into each target-feature build so the compiler vectorises it
    /// across centroids for that instruction set.
    #[inline(always)]
    fn lut_dot_lanes(&self, q: &[f32], lut: &mut [f32]) {
        let (ksub, dsub) = (self.ksub(), self.dsub());
        for j in 0..self.m {
            let row = &mut lut[j * ksub..(j + 1) * ksub];
            for t in 0..dsub {
                let qv = q[j * dsub + t];
                let col = &self.transposed[(j * dsub + t) * ksub..(j * dsub + t + 1) * ksub];
                for (l, &c) in row.iter_mut().zip(col) {
                    *l += qv * c;
                }
            }
        }
    }

    /// Σⱼ lut[j][codeⱼ] (codes below `ksub`), with four independent sums so the additions
    /// overlap instead of waiting on each other.
    #[inline(always)]
    pub fn score(&self, lut: &[f32], code: &[u8]) -> f32 {
        let ksub = self.ksub();
        let mut acc = [0f32; 4];
        let quads = code.chunks_exact(4);
        let rest = quads.remainder();
        for (i, c) in quads.enumerate() {
            let row = &lut[i * 4 * ksub..(i + 1) * 4 * ksub];
            acc[0] += row[c[0] as usize];
            acc[1] += row[ksub + c[1] as usize];
            acc[2] += row[2 * ksub + c[2] as usize];
            acc[3] += row[3 * ksub + c[3] as usize];
        }
        let done = code.len() - rest.len();
        for (j, &c) in rest.iter().enumerate() {
            acc[0] += lut[(done + j) * ksub + c as usize];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn lut_scores_equal_decoded_distances() {
        let mut rng = SplitMix64::new(3);
        let (n, d) = (600, 8);
        let data: Vec<f32> = (0..n * d).map(|_| rng.next_f64() as f32).collect();
        let pq = Pq::train(&data, d, 4, 4, 0, 1).unwrap();
        let q: Vec<f32> = (0..d).map(|_| rng.next_f64() as f32).collect();
        let (mut l2, mut ip, mut dec) = (Vec::new(), Vec::new(), Vec::new());
        pq.lut_l2(&q, &mut l2);
        pq.lut_dot(&q, &mut ip);
        let mut code = vec![0u8; 4];
        for row in data.chunks_exact(d).take(20) {
            pq.encode(row, &mut code);
            pq.decode(&code, &mut dec);
            let want_l2: f32 = q.iter().zip(&dec).map(|(a, b)| (a - b) * (a - b)).sum();
            let want_ip: f32 = q.iter().zip(&dec).map(|(a, b)| a * b).sum();
            assert!((pq.score(&l2, &code) - want_l2).abs() < 1e-4);
            assert!((pq.score(&ip, &code) - want_ip).abs() < 1e-4);
            // Each sub-vector took its nearest centroid: decoding is no worse than any other.
            let err: f32 = row.iter().zip(&dec).map(|(a, b)| (a - b) * (a - b)).sum();
            assert!(err < 0.5 * d as f32);
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(Pq::check(10, 3, 8).is_err());
        assert!(Pq::check(12, 3, 9).is_err());
        assert!(Pq::from_parts(4, 2, 1, vec![0.0; 3]).is_err());
    }

    #[test]
    fn batch_encoding_equals_one_at_a_time() {
        let mut r = crate::rng::SplitMix64::new(9);
        let (n, d) = (3000, 24);
        let x: Vec<f32> = (0..n * d).map(|_| r.next_f64() as f32).collect();
        for (m, nbits) in [(4, 8), (8, 5), (24, 3)] {
            let pq = Pq::train(&x, d, m, nbits, 1, 2).unwrap();
            let batch = pq.encode_batch(&x, 2);
            let mut one = vec![0u8; m];
            for i in 0..n {
                pq.encode(&x[i * d..(i + 1) * d], &mut one);
                assert_eq!(&batch[i * m..(i + 1) * m], &one[..], "m={m} row {i}");
            }
        }
    }
}
