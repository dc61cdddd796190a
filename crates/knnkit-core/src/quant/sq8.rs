//! SQ8: per-dimension 8-bit scalar quantization.
//!
//! Each dimension `i` has a range `[lo_i, lo_i + 255·s_i]` learnt from training data; a value
//! is stored as `c_i = round((x_i − lo_i) / s_i)` clamped to 0‥255, so the decoded vector is
//! `x̂_i = lo_i + s_i·c_i` (values outside the range clamp). A query `q` scores a code with
//!
//! ```text
//! ⟨q, x̂⟩ = ⟨q, lo⟩ + Σ (q_i·s_i)·c_i
//! ```
//!
//! so one weight × byte dot product per code ([`dot_u8_i16`], weights rounded to 16 bits) serves
//! inner product, cosine (on normalised vectors) and squared L2 (`‖x̂‖² − 2⟨q, x̂⟩ + ‖q‖²`, with `‖x̂‖²` stored per code).
//! Codes are a quarter of the float32 bytes: that, not arithmetic, is what makes graph
//! traversal faster.

use crate::error::{Error, Result};

/// A trained per-dimension 8-bit quantizer.
#[derive(Clone, Debug, PartialEq)]
pub struct Sq8 {
    /// Lower end of each dimension's range.
    pub lo: Vec<f32>,
    /// Step of each dimension (range / 255); 0 for a constant dimension.
    pub step: Vec<f32>,
}

impl Sq8 {
    /// Learns each dimension's range (min to max) from `data` (row-major, `d` columns).
    pub fn train(data: &[f32], d: usize) -> Result<Self> {
        if d == 0 || data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(Error::param(
                "training data",
                format!("a non-empty multiple of {d} values"),
                data.len(),
            ));
        }
        let mut lo = vec![f32::INFINITY; d];
        let mut hi = vec![f32::NEG_INFINITY; d];
        for row in data.chunks_exact(d) {
            for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(x);
                *h = h.max(x);
            }
        }
        let step = lo.iter().zip(&hi).map(|(&l, &h)| (h - l) / 255.0).collect();
        Self::from_parts(lo, step)
    }

    /// A quantizer from stored parts (validated: finite, non-negative steps).
    pub fn from_parts(lo: Vec<f32>, step: Vec<f32>) -> Result<Self> {
        if lo.len() != step.len() || lo.is_empty() {
            return Err(Error::Shape {
                name: "sq8 step",
                expected: lo.len(),
                got: step.len(),
            });
        }
        if !lo.iter().chain(&step).all(|v| v.is_finite()) || step.iter().any(|&s| s < 0.0) {
            return Err(Error::param(
                "sq8 ranges",
                "finite values and non-negative steps",
                "non-finite or negative values",
            ));
        }
        Ok(Sq8 { lo, step })
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.lo.len()
    }

    /// Encodes one vector into `out` (length `dim`); returns ‖x̂‖² of the decoded vector.
    pub fn encode(&self, x: &[f32], out: &mut [u8]) -> f32 {
        let mut norm = 0f32;
        for (i, (&v, c)) in x.iter().zip(out.iter_mut()).enumerate() {
            let s = self.step[i];
            let code = if s > 0.0 {
                ((v - self.lo[i]) / s).round().clamp(0.0, 255.0)
            } else {
                0.0
            };
            *c = code as u8;
            let dec = self.lo[i] + s * code;
            norm += dec * dec;
        }
        norm
    }

    /// Decodes one code.
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        code.iter()
            .enumerate()
            .map(|(i, &c)| self.lo[i] + self.step[i] * c as f32)
            .collect()
    }

    /// Query weights `wᵢ = qᵢ·sᵢ` into `w`; returns the constant ⟨q, lo⟩, so that
    /// ⟨q, x̂⟩ = ⟨q, lo⟩ + Σ wᵢ·codeᵢ.
    pub fn prepare(&self, q: &[f32], w: &mut Vec<f32>) -> f32 {
        w.clear();
        w.extend(q.iter().zip(&self.step).map(|(&a, &s)| a * s));
        q.iter().zip(&self.lo).map(|(&a, &l)| a * l).sum()
    }

    /// Integer query weights: `wq` ≈ `w / scale` rounded to i16 (with `w` from
    /// [`Sq8::prepare`]), so that Σ wᵢ·cᵢ ≈ `scale` · [`dot_u8_i16`]`(wq, code)`. The largest
    /// weight maps to the largest value whose sums cannot overflow i32 (≤ 32767): relative error
    /// per weight ≤ 2⁻¹⁵ at d ≤ 256 (2⁻¹⁴ at d = 384), far below the codes' own 2⁻⁹.
    pub fn prepare_i16(&self, w: &[f32], wq: &mut Vec<i16>) -> f32 {
        let top = w.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let limit = (i32::MAX as f64 / (255.0 * w.len().max(1) as f64)).min(32767.0) as f32;
        let scale = if top > 0.0 { top / limit } else { 1.0 };
        wq.clear();
        wq.extend(w.iter().map(|&x| (x / scale).round() as i16));
        scale
    }
}

/// Scalar reference of Σ wᵢ·cᵢ for float weights (what the integer kernel approximates).
pub fn dot_u8_naive(w: &[f32], c: &[u8]) -> f32 {
    w.iter().zip(c).map(|(&a, &b)| a * b as f32).sum()
}

/// An integer × byte dot-product kernel: Σ wᵢ·cᵢ in i32.
pub type I16Kernel = fn(&[i16], &[u8]) -> i32;

/// Scalar twin of [`dot_u8_i16`].
pub fn dot_u8_i16_naive(w: &[i16], c: &[u8]) -> i32 {
    w.iter().zip(c).map(|(&a, &b)| a as i32 * b as i32).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86_int {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn avx512bw_inner(w: &[i16], c: &[u8]) -> i32 {
        let n = w.len().min(c.len());
        let (wp, cp) = (w.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_si512();
        let mut acc1 = _mm512_setzero_si512();
        let mut i = 0;
        // SAFETY: every load reads [i, i + 32) or [i, i + 64) with i + width <= n.
        unsafe {
            while i + 64 <= n {
                let c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(cp.add(i) as *const __m256i));
                let c1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(cp.add(i + 32) as *const __m256i));
                let w0 = _mm512_loadu_si512(wp.add(i) as *const __m512i);
                let w1 = _mm512_loadu_si512(wp.add(i + 32) as *const __m512i);
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(c0, w0));
                acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(c1, w1));
                i += 64;
            }
            if i + 32 <= n {
                let c0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(cp.add(i) as *const __m256i));
                let w0 = _mm512_loadu_si512(wp.add(i) as *const __m512i);
                acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(c0, w0));
                i += 32;
            }
        }
        let mut s = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
        for j in i..n {
            s += w[j] as i32 * c[j] as i32;
        }
        s
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2_inner(w: &[i16], c: &[u8]) -> i32 {
        let n = w.len().min(c.len());
        let (wp, cp) = (w.as_ptr(), c.as_ptr());
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut i = 0;
        // SAFETY: every load reads [i, i + 16) or [i, i + 32) with i + width <= n.
        unsafe {
            while i + 32 <= n {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i) as *const __m128i));
                let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i + 16) as *const __m128i));
                let w0 = _mm256_loadu_si256(wp.add(i) as *const __m256i);
                let w1 = _mm256_loadu_si256(wp.add(i + 16) as *const __m256i);
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(c0, w0));
                acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(c1, w1));
                i += 32;
            }
            if i + 16 <= n {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i) as *const __m128i));
                let w0 = _mm256_loadu_si256(wp.add(i) as *const __m256i);
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(c0, w0));
                i += 16;
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
        let mut s: i32 = lanes.iter().sum();
        for j in i..n {
            s += w[j] as i32 * c[j] as i32;
        }
        s
    }

    // SAFETY (both): handed out by `dot_u8_i16_for` only for a token that proves the
    // features (AVX-512BW for `avx512bw`, AVX2 for `avx2`).
    pub fn avx512bw(w: &[i16], c: &[u8]) -> i32 {
        unsafe { avx512bw_inner(w, c) }
    }
    pub fn avx2(w: &[i16], c: &[u8]) -> i32 {
        unsafe { avx2_inner(w, c) }
    }
}

int_dispatch!("byte", dot_u8_i16_for, dot_u8_i16, dot_u8_i16_naive);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integer_simd_matches_scalar(pairs in prop::collection::vec((-20000i16..20000, any::<u8>()), 0..300)) {
            let (w, c): (Vec<i16>, Vec<u8>) = pairs.into_iter().unzip();
            let want = dot_u8_i16_naive(&w, &c);
            for simd in Simd::available_levels() {
                prop_assert_eq!(dot_u8_i16_for(simd)(&w, &c), want, "{:?}", simd);
            }
        }

        #[test]
        fn integer_weights_track_float_weights(ws in prop::collection::vec(-3f32..3.0, 1..500)) {
            let q = Sq8::from_parts(vec![0.0; ws.len()], vec![1.0; ws.len()]).unwrap();
            let mut wq = Vec::new();
            let scale = q.prepare_i16(&ws, &mut wq);
            let c: Vec<u8> = (0..ws.len()).map(|i| (i * 37 % 256) as u8).collect();
            let exact = dot_u8_naive(&ws, &c);
            let approx = scale * dot_u8_i16()(&wq, &c) as f32;
            let bound: f32 = c.iter().map(|&x| 0.5 * scale * x as f32).sum::<f32>() + 1e-3;
            prop_assert!((exact - approx).abs() <= bound, "{} vs {}", exact, approx);
        }

        #[test]
        fn decode_is_within_half_a_step(rows in prop::collection::vec(-5f32..5.0, 6..60)) {
            let d = 3;
            let n = rows.len() / d * d;
            let data = &rows[..n];
            let q = Sq8::train(data, d).unwrap();
            let mut code = vec![0u8; d];
            for row in data.chunks_exact(d) {
                q.encode(row, &mut code);
                for ((&x, y), s) in row.iter().zip(q.decode(&code)).zip(&q.step) {
                    prop_assert!((x - y).abs() <= 0.5 * s + 1e-5);
                }
            }
        }
    }

    #[test]
    fn prepared_dot_equals_decoded_dot() {
        let data: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let q = Sq8::train(&data, 4).unwrap();
        let mut code = vec![0u8; 4];
        q.encode(&data[8..12], &mut code);
        let query = [0.5f32, -1.0, 2.0, 0.25];
        let mut w = Vec::new();
        let c0 = q.prepare(&query, &mut w);
        let direct: f32 = query.iter().zip(q.decode(&code)).map(|(a, b)| a * b).sum();
        assert!((c0 + dot_u8_naive(&w, &code) - direct).abs() < 1e-4);
    }

    #[test]
    fn bad_parts_are_rejected() {
        assert!(Sq8::train(&[], 3).is_err());
        assert!(Sq8::from_parts(vec![0.0], vec![-1.0]).is_err());
        assert!(Sq8::from_parts(vec![f32::NAN], vec![1.0]).is_err());
    }
}
