//! SQ4: per-dimension 4-bit scalar quantization, two codes per byte.
//!
//! As [`super::Sq8`] with 16 levels: dimension `i` is stored as `c_i = round((x_i − lo_i)/s_i)`
//! clamped to 0‥15, decoded as `lo_i + s_i·c_i`, and a query scores a code with one integer dot
//! product `Σ (q_i·s_i)·c_i` (weights rounded to 16 bits). The range of each dimension is its
//! mean ± [`RANGE_SIGMAS`] standard deviations (clipped to the data's min and max): with 16
//! levels, spending them on the bulk of the values beats covering rare extremes.
//!
//! Layout: dimensions go in blocks of 64, 32 bytes per block; byte `j` of a block holds
//! dimension `j` in its low nibble and dimension `j + 32` in its high nibble, so a SIMD kernel
//! splits a block into two runs of consecutive dimensions with one mask and one shift. The last
//! block is padded with zero codes (and the query weights with zeros). Half the bytes of SQ8:
//! graph traversal is bound by the memory traffic of codes, not by arithmetic.

use crate::error::{Error, Result};
use crate::quant::sq8::I16Kernel;

/// Standard deviations either side of a dimension's mean covered by its 16 levels.
pub const RANGE_SIGMAS: f32 = 2.6;

/// Dimensions per block of the packed layout (32 bytes).
pub const BLOCK: usize = 64;

/// A trained per-dimension 4-bit quantizer.
#[derive(Clone, Debug, PartialEq)]
pub struct Sq4 {
    /// Lower end of each dimension's range.
    pub lo: Vec<f32>,
    /// Step of each dimension (range / 15); 0 for a constant dimension.
    pub step: Vec<f32>,
}

/// Bytes of one packed code of dimension `d`.
pub fn code_bytes(d: usize) -> usize {
    d.div_ceil(BLOCK) * (BLOCK / 2)
}

/// Byte and shift holding dimension `i` in the packed layout.
#[inline]
fn place(i: usize) -> (usize, u32) {
    let (b, j) = (i / BLOCK, i % BLOCK);
    (
        b * (BLOCK / 2) + j % (BLOCK / 2),
        if j < BLOCK / 2 { 0 } else { 4 },
    )
}

impl Sq4 {
    /// Learns each dimension's range from `data` (row-major, `d` columns): mean ± 2.6 σ, within
    /// the data's min and max.
    pub fn train(data: &[f32], d: usize) -> Result<Self> {
        if d == 0 || data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(Error::param(
                "training data",
                format!("a non-empty multiple of {d} values"),
                data.len(),
            ));
        }
        let n = (data.len() / d) as f64;
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        let mut min = vec![f32::INFINITY; d];
        let mut max = vec![f32::NEG_INFINITY; d];
        for row in data.chunks_exact(d) {
            for (i, &x) in row.iter().enumerate() {
                sum[i] += x as f64;
                sq[i] += x as f64 * x as f64;
                min[i] = min[i].min(x);
                max[i] = max[i].max(x);
            }
        }
        let mut lo = Vec::with_capacity(d);
        let mut step = Vec::with_capacity(d);
        for i in 0..d {
            let mean = sum[i] / n;
            let sd = (sq[i] / n - mean * mean).max(0.0).sqrt();
            let a = ((mean - RANGE_SIGMAS as f64 * sd) as f32).max(min[i]);
            let b = ((mean + RANGE_SIGMAS as f64 * sd) as f32).min(max[i]);
            lo.push(a);
            step.push(((b - a) / 15.0).max(0.0));
        }
        Self::from_parts(lo, step)
    }

    /// A quantizer from stored parts (validated: finite, non-negative steps).
    pub fn from_parts(lo: Vec<f32>, step: Vec<f32>) -> Result<Self> {
        if lo.len() != step.len() || lo.is_empty() {
            return Err(Error::Shape {
                name: "sq4 step",
                expected: lo.len(),
                got: step.len(),
            });
        }
        if !lo.iter().chain(&step).all(|v| v.is_finite()) || step.iter().any(|&s| s < 0.0) {
            return Err(Error::param(
                "sq4 ranges",
                "finite values and non-negative steps",
                "non-finite or negative values",
            ));
        }
        Ok(Sq4 { lo, step })
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.lo.len()
    }

    /// Encodes one vector into `out` ([`code_bytes`] long, packed); returns ‖x̂‖².
    pub fn encode(&self, x: &[f32], out: &mut [u8]) -> f32 {
        out.fill(0);
        let mut norm = 0f32;
        for (i, &v) in x.iter().enumerate() {
            let s = self.step[i];
            let code = if s > 0.0 {
                ((v - self.lo[i]) / s).round().clamp(0.0, 15.0)
            } else {
                0.0
            };
            let (byte, shift) = place(i);
            out[byte] |= (code as u8) << shift;
            let dec = self.lo[i] + s * code;
            norm += dec * dec;
        }
        norm
    }

    /// Decodes one packed code.
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        (0..self.dim())
            .map(|i| {
                let (byte, shift) = place(i);
                self.lo[i] + self.step[i] * ((code[byte] >> shift) & 15) as f32
            })
            .collect()
    }

    /// Query weights `wᵢ = qᵢ·sᵢ` into `w`; returns the constant ⟨q, lo⟩.
    pub fn prepare(&self, q: &[f32], w: &mut Vec<f32>) -> f32 {
        w.clear();
        w.extend(q.iter().zip(&self.step).map(|(&a, &s)| a * s));
        q.iter().zip(&self.lo).map(|(&a, &l)| a * l).sum()
    }

    /// Integer weights `wq ≈ w / scale` (i16), padded with zeros to whole blocks, so that
    /// Σ wᵢ·cᵢ ≈ `scale` · [`dot_u4_i16`]`(wq, code)`.
    pub fn prepare_i16(&self, w: &[f32], wq: &mut Vec<i16>) -> f32 {
        let top = w.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let scale = if top > 0.0 { top / 32767.0 } else { 1.0 };
        wq.clear();
        wq.extend(w.iter().map(|&x| (x / scale).round() as i16));
        wq.resize(w.len().div_ceil(BLOCK) * BLOCK, 0);
        scale
    }
}

/// Scalar twin of [`dot_u4_i16`]: Σ wᵢ·cᵢ over whole blocks (`w`: 64 weights per 32 bytes).
pub fn dot_u4_i16_naive(w: &[i16], c: &[u8]) -> i32 {
    let mut s = 0i32;
    for (wb, cb) in w.chunks_exact(BLOCK).zip(c.chunks_exact(BLOCK / 2)) {
        for (j, &byte) in cb.iter().enumerate() {
            s += wb[j] as i32 * (byte & 15) as i32 + wb[j + BLOCK / 2] as i32 * (byte >> 4) as i32;
        }
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86_int {
    use super::BLOCK;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn avx512bw_inner(w: &[i16], c: &[u8]) -> i32 {
        let blocks = (w.len() / BLOCK).min(c.len() / (BLOCK / 2));
        let (wp, cp) = (w.as_ptr(), c.as_ptr());
        let mask = _mm256_set1_epi8(15);
        let mut acc0 = _mm512_setzero_si512();
        let mut acc1 = _mm512_setzero_si512();
        // SAFETY: block b reads c[32b, 32b + 32) and w[64b, 64b + 64), in bounds.
        unsafe {
            for b in 0..blocks {
                let x = _mm256_loadu_si256(cp.add(b * 32) as *const __m256i);
                let lo = _mm512_cvtepu8_epi16(_mm256_and_si256(x, mask));
                let hi = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(x, 4), mask));
                let w0 = _mm512_loadu_si512(wp.add(b * 64) as *const __m512i);
                let w1 = _mm512_loadu_si512(wp.add(b * 64 + 32) as *const __m512i);
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(lo, w0));
                acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(hi, w1));
            }
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2_inner(w: &[i16], c: &[u8]) -> i32 {
        let blocks = (w.len() / BLOCK).min(c.len() / (BLOCK / 2));
        let (wp, cp) = (w.as_ptr(), c.as_ptr());
        let mask = _mm_set1_epi8(15);
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        // SAFETY: block b reads c[32b, 32b + 32) and w[64b, 64b + 64), in bounds.
        unsafe {
            for b in 0..blocks {
                for half in 0..2 {
                    let x = _mm_loadu_si128(cp.add(b * 32 + half * 16) as *const __m128i);
                    let lo = _mm256_cvtepu8_epi16(_mm_and_si128(x, mask));
                    let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(x, 4), mask));
                    let w0 = _mm256_loadu_si256(wp.add(b * 64 + half * 16) as *const __m256i);
                    let w1 = _mm256_loadu_si256(wp.add(b * 64 + 32 + half * 16) as *const __m256i);
                    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(lo, w0));
                    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, w1));
                }
            }
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds 8 i32.
        unsafe {
            _mm256_storeu_si256(
                lanes.as_mut_ptr() as *mut __m256i,
                _mm256_add_epi32(acc0, acc1),
            )
        };
        lanes.iter().sum()
    }

    // SAFETY (both): handed out by `dot_u4_i16_for` only for a token that proves the
    // features (AVX-512BW for `avx512bw`, AVX2 for `avx2`).
    pub fn avx512bw(w: &[i16], c: &[u8]) -> i32 {
        unsafe { avx512bw_inner(w, c) }
    }
    pub fn avx2(w: &[i16], c: &[u8]) -> i32 {
        unsafe { avx2_inner(w, c) }
    }
}

int_dispatch!("nibble", dot_u4_i16_for, dot_u4_i16, dot_u4_i16_naive);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simd_matches_scalar(blocks in 0usize..8, seed in any::<u64>()) {
            let mut r = crate::rng::SplitMix64::new(seed);
            let w: Vec<i16> = (0..blocks * BLOCK).map(|_| r.next_u64() as i16).collect();
            let c: Vec<u8> = (0..blocks * BLOCK / 2).map(|_| r.next_u64() as u8).collect();
            let want = dot_u4_i16_naive(&w, &c);
            for simd in Simd::available_levels() {
                prop_assert_eq!(dot_u4_i16_for(simd)(&w, &c), want, "{:?}", simd);
            }
        }

        #[test]
        fn prepared_dot_tracks_decoded_dot(rows in prop::collection::vec(-5f32..5.0, 70..400)) {
            let d = 70; // two blocks, the second padded
            let n = rows.len() / d * d;
            let q = Sq4::train(&rows[..n], d).unwrap();
            let mut code = vec![0u8; code_bytes(d)];
            let query: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
            let (mut w, mut wq) = (Vec::new(), Vec::new());
            let c0 = q.prepare(&query, &mut w);
            let scale = q.prepare_i16(&w, &mut wq);
            for row in rows[..n].chunks_exact(d) {
                let norm = q.encode(row, &mut code);
                let dec = q.decode(&code);
                let direct: f32 = query.iter().zip(&dec).map(|(a, b)| a * b).sum();
                let approx = c0 + scale * dot_u4_i16()(&wq, &code) as f32;
                let bound = 15.0 * 0.5 * scale * d as f32 + 1e-3;
                prop_assert!((direct - approx).abs() <= bound, "{} vs {}", direct, approx);
                let n2: f32 = dec.iter().map(|v| v * v).sum();
                prop_assert!((norm - n2).abs() <= 1e-3 * n2.max(1.0));
                for (i, (&x, &y)) in row.iter().zip(&dec).enumerate() {
                    let (a, b) = (q.lo[i], q.lo[i] + 15.0 * q.step[i]);
                    prop_assert!((x.clamp(a, b) - y).abs() <= 0.5 * q.step[i] + 1e-5);
                }
            }
        }
    }

    #[test]
    fn layout_packs_dimension_j_and_j_plus_32() {
        let d = 64;
        let q = Sq4::from_parts(vec![0.0; d], vec![1.0; d]).unwrap();
        let x: Vec<f32> = (0..d).map(|i| (i % 16) as f32).collect();
        let mut code = vec![0u8; code_bytes(d)];
        q.encode(&x, &mut code);
        assert_eq!(code[0], 0);
        assert_eq!(code[1], (1 << 4) | 1);
        assert_eq!(code[31], (15 << 4) | 15);
        assert_eq!(q.decode(&code), x);
        assert_eq!(code_bytes(384), 192);
        assert_eq!(code_bytes(65), 64);
    }

    #[test]
    fn bad_parts_are_rejected() {
        assert!(Sq4::train(&[], 3).is_err());
        assert!(Sq4::from_parts(vec![0.0], vec![-1.0]).is_err());
        assert!(Sq4::from_parts(vec![f32::NAN], vec![1.0]).is_err());
    }
}
