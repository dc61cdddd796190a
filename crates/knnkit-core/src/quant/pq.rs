//! PQ: product quantization (Jégou, Douze & Schmid, 2011).
//!
//! A vector is cut into `m` sub-vectors of `dsub = d / m` values; each is replaced by the index
//! of its nearest centroid in a sub-codebook of `ksub = 2^nbits` centroids (one byte per
//! sub-vector here, so `nbits ≤ 8`). A query builds a lookup table once — for each sub-space the
//! squared distance (or dot product) of its sub-vector to every centroid — and a code then
//! scores with `m` table lookups: Σⱼ LUT[j][codeⱼ].

use crate::error::{Error, Result};
use crate::kmeans::{kmeans, KMeansParams};
use crate::metric::kernels::select;

/// A trained product quantizer.
#[derive(Clone, Debug, PartialEq)]
pub struct Pq {
    pub d: usize,
    pub m: usize,
    pub nbits: usize,
    /// `m × ksub × dsub` centroids.
    pub centroids: Vec<f32>,
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
        Ok(Pq {
            d,
            m,
            nbits,
            centroids,
        })
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
        Ok(Pq {
            d,
            m,
            nbits,
            centroids,
        })
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
        let sq = select::<f32>().sqeuclidean;
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

    /// Decodes `m` bytes into a vector.
    pub fn decode(&self, code: &[u8], out: &mut Vec<f32>) {
        out.clear();
        for (j, &c) in code.iter().enumerate().take(self.m) {
            out.extend_from_slice(self.centroid(j, c as usize));
        }
    }

    /// Lookup table of squared distances from `q`'s sub-vectors to every centroid (m × ksub).
    pub fn lut_l2(&self, q: &[f32], lut: &mut Vec<f32>) {
        let sq = select::<f32>().sqeuclidean;
        let dsub = self.dsub();
        lut.clear();
        for j in 0..self.m {
            let sub = &q[j * dsub..(j + 1) * dsub];
            lut.extend((0..self.ksub()).map(|c| sq(sub, self.centroid(j, c))));
        }
    }

    /// Lookup table of dot products of `q`'s sub-vectors with every centroid (m × ksub).
    pub fn lut_dot(&self, q: &[f32], lut: &mut Vec<f32>) {
        let dot = select::<f32>().dot;
        let dsub = self.dsub();
        lut.clear();
        for j in 0..self.m {
            let sub = &q[j * dsub..(j + 1) * dsub];
            lut.extend((0..self.ksub()).map(|c| dot(sub, self.centroid(j, c))));
        }
    }

    /// Σⱼ lut[j][codeⱼ].
    #[inline(always)]
    pub fn score(&self, lut: &[f32], code: &[u8]) -> f32 {
        let ksub = self.ksub();
        code.iter()
            .enumerate()
            .map(|(j, &c)| lut[j * ksub + c as usize])
            .sum()
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
}
