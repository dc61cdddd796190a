//! Packed float32 tiles of dot products for the exact search (x86-64 with AVX-512, allowed by a
//! [`Simd`] token), in two precisions:
//!
//! - [`Kind::F32`]: f32 FMAs; the usual rounding of an f32 dot product.
//! - [`Kind::Bf16`] (AVX-512 BF16): products of bf16-rounded copies with `vdpbf16ps`, accumulated
//!   in f32 — twice the arithmetic rate. With round-to-nearest, |x − bf16(x)| ≤ u|x| (u = 2⁻⁸), so
//!   |⟨x,y⟩ − ⟨x̃,ỹ⟩| ≤ (2u + u²)·Σ|xᵢyᵢ| + (accumulation) ≤ [`dot_error`]·‖x‖‖y‖.
//!
//! Neither result is trusted: the search turns each approximate key into a proven lower bound and
//! re-scores in f32 only the candidates the bound cannot exclude, so the returned neighbours and
//! distances are exactly those of the direct computation.
//!
//! Layout: the base block is packed into panels of [`NR`] rows; a panel holds, for each *step*
//! (one feature for f32, a pair of features for bf16), the `NR` rows' values as u32 — 2 × 64-byte
//! vectors per step. Queries are packed in groups of [`MR`]: for each step, the group's `MR`
//! values side by side, so one step's broadcasts come from one 32-byte line. The micro-kernel
//! keeps an MR × NR tile of f32 accumulators (16 zmm registers) over all features; odd feature
//! counts (bf16) and partial groups and panels are padded with zeros.

use crate::simd::{Level, Simd};

/// Queries per micro-kernel call.
pub const MR: usize = 8;
/// Base rows per panel.
pub const NR: usize = 32;

/// Relative error bound of a bf16 dot product (accumulated in f32 over `d` features), as a
/// multiple of ‖x‖‖y‖: 2u + u² for the two roundings, plus the f32 accumulation.
pub fn dot_error(d: usize) -> f64 {
    let u = 2f64.powi(-8);
    (2.0 * u + u * u) * (1.0 + 1e-6) + (d as f64 + 4.0) * 2f64.powi(-24) * (1.0 + u).powi(2)
}

/// The precision of a packed tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F32,
    Bf16,
}

impl Kind {
    /// Steps (packed u32 values per row) for `d` features.
    pub fn steps(self, d: usize) -> usize {
        match self {
            Kind::F32 => d,
            Kind::Bf16 => d.div_ceil(2),
        }
    }

    /// The packed u32 of step `s` of `row`.
    #[inline(always)]
    fn value(self, row: &[f32], s: usize) -> u32 {
        match self {
            Kind::F32 => row[s].to_bits(),
            Kind::Bf16 => pair(row, s),
        }
    }

    /// True when the token's level runs this kind's kernel (AVX-512F; BF16 as well for bf16).
    pub fn runs_on(self, simd: Simd) -> bool {
        match self {
            Kind::F32 => simd.level() == Level::Avx512,
            Kind::Bf16 => simd.level() == Level::Avx512 && simd.avx512bf16(),
        }
    }

    /// True when the exact search may use this kind at the token's level: it runs there and,
    /// for bf16, `KNNKIT_BF16=0` (read once per process) does not turn the bf16 passes off.
    pub fn enabled(self, simd: Simd) -> bool {
        self.runs_on(simd) && (self == Kind::F32 || bf16_allowed())
    }
}

/// False when `KNNKIT_BF16=0` turns the bf16 tile off (read once).
fn bf16_allowed() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| std::env::var("KNNKIT_BF16").map_or(true, |v| v != "0"))
}

/// Relative error bound of a float32 query against a bf16-stored row (only the row is rounded),
/// as a multiple of ‖x‖‖y‖.
pub fn stream_dot_error(d: usize) -> f64 {
    let u = 2f64.powi(-8);
    u * (1.0 + 1e-6) + (d as f64 + 4.0) * 2f64.powi(-24) * (1.0 + u)
}

/// bf16 copy of float32 data (round to nearest even), for the streaming pass of few-query
/// searches: half the bytes to read per query.
pub fn to_bf16(data: &[f32]) -> Vec<u16> {
    let mut out = Vec::with_capacity(data.len());
    extend_bf16(&mut out, data);
    out
}

/// Appends the bf16 copy of `data` to `out` (see [`to_bf16`]).
pub fn extend_bf16(out: &mut Vec<u16>, data: &[f32]) {
    out.extend(data.iter().map(|&x| bf16(x) as u16));
}

/// Round-to-nearest-even f32 → bf16 bits (inputs are finite).
#[inline(always)]
fn bf16(x: f32) -> u32 {
    let b = x.to_bits();
    (b + 0x7fff + ((b >> 16) & 1)) >> 16
}

#[inline(always)]
fn pair(row: &[f32], s: usize) -> u32 {
    let lo = row.get(2 * s).map_or(0, |&x| bf16(x));
    let hi = row.get(2 * s + 1).map_or(0, |&x| bf16(x));
    lo | (hi << 16)
}

/// Packs `rows` (m × d) into query groups of `MR`.
pub fn pack_queries(kind: Kind, rows: &[f32], d: usize, out: &mut Vec<u32>) {
    let m = rows.len() / d;
    let st = kind.steps(d);
    let groups = m.div_ceil(MR);
    out.clear();
    out.resize(groups * st * MR, 0);
    for (i, row) in rows.chunks_exact(d).enumerate() {
        let (g, r) = (i / MR, i % MR);
        let base = g * st * MR;
        for s in 0..st {
            out[base + s * MR + r] = kind.value(row, s);
        }
    }
}

/// Packs `rows` (n × d) into panels of `NR` rows.
pub fn pack_base(kind: Kind, rows: &[f32], d: usize, out: &mut Vec<u32>) {
    let n = rows.len() / d;
    let st = kind.steps(d);
    let panels = n.div_ceil(NR);
    out.clear();
    out.resize(panels * st * NR, 0);
    // Panel by panel, step by step: the writes are sequential and the reads touch the panel's
    // NR rows a cache line at a time.
    for (p, chunk) in rows.chunks(NR * d).enumerate() {
        let panel = &mut out[p * st * NR..(p + 1) * st * NR];
        let rows_here = chunk.len() / d;
        match kind {
            Kind::F32 => pack_panel(panel, chunk, d, rows_here, st, |row, s| row[s].to_bits()),
            Kind::Bf16 => pack_panel(panel, chunk, d, rows_here, st, pair),
        }
    }
}

#[inline(always)]
fn pack_panel(
    panel: &mut [u32],
    rows: &[f32],
    d: usize,
    n: usize,
    st: usize,
    value: impl Fn(&[f32], usize) -> u32,
) {
    for (s, out) in panel.chunks_exact_mut(NR).take(st).enumerate() {
        for (c, o) in out.iter_mut().take(n).enumerate() {
            *o = value(&rows[c * d..(c + 1) * d], s);
        }
    }
}

/// `out[i * ldo + j]` = ⟨query i, base row j⟩ (approximate) for the packed queries (m rows) and
/// packed base (n rows), with the kernel `simd` allows (panics when it does not run `kind`).
#[allow(clippy::too_many_arguments)]
pub fn dots(
    simd: Simd,
    kind: Kind,
    qp: &[u32],
    m: usize,
    bp: &[u32],
    n: usize,
    d: usize,
    out: &mut [f32],
    ldo: usize,
) {
    let st = kind.steps(d);
    assert!(qp.len() >= m.div_ceil(MR) * st * MR && bp.len() >= n.div_ceil(NR) * st * NR);
    assert!(m == 0 || out.len() >= (m - 1) * ldo + n);
    assert!(
        kind.runs_on(simd),
        "{kind:?} tile kernel used at level {}",
        simd.name()
    );
    let mut tile = [0f32; MR * NR];
    for p in 0..n.div_ceil(NR) {
        let panel = &bp[p * st * NR..(p + 1) * st * NR];
        let cols = (n - p * NR).min(NR);
        for g in 0..m.div_ceil(MR) {
            let group = &qp[g * st * MR..(g + 1) * st * MR];
            // SAFETY: `runs_on` checked the token, which proves the CPU features; the slices
            // hold `st` steps.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                match kind {
                    Kind::F32 => kernel_f32(group, panel, st, &mut tile),
                    Kind::Bf16 => kernel_bf16(group, panel, st, &mut tile),
                }
            };
            let rows = (m - g * MR).min(MR);
            for r in 0..rows {
                let o = (g * MR + r) * ldo + p * NR;
                out[o..o + cols].copy_from_slice(&tile[r * NR..r * NR + cols]);
            }
        }
    }
}

/// The MR × NR micro-kernel: `$fma(acc, query_broadcast, base_vector)` over every step.
macro_rules! micro_kernel {
    ($name:ident, $features:literal, |$acc:ident, $q:ident, $b:ident| $fma:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(group: &[u32], panel: &[u32], st: usize, tile: &mut [f32; MR * NR]) {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;
            debug_assert!(group.len() >= st * MR && panel.len() >= st * NR);
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            let (g, p) = (group.as_ptr(), panel.as_ptr());
            for s in 0..st {
                // SAFETY: s < st, and the slices hold st * MR and st * NR values.
                unsafe {
                    let b0 = _mm512_loadu_si512(p.add(s * NR).cast());
                    let b1 = _mm512_loadu_si512(p.add(s * NR + 16).cast());
                    for (r, a) in acc.iter_mut().enumerate() {
                        let q = _mm512_set1_epi32(*g.add(s * MR + r) as i32);
                        let ($acc, $q, $b) = (a[0], q, b0);
                        a[0] = $fma;
                        let ($acc, $q, $b) = (a[1], q, b1);
                        a[1] = $fma;
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                // SAFETY: the tile holds MR rows of NR = 32 floats.
                unsafe {
                    _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR), a[0]);
                    _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16), a[1]);
                }
            }
        }
    };
}

micro_kernel!(kernel_f32, "avx512f", |acc, q, b| _mm512_fmadd_ps(
    _mm512_castsi512_ps(q),
    _mm512_castsi512_ps(b),
    acc
));
micro_kernel!(kernel_bf16, "avx512f,avx512bf16", |acc, q, b| {
    // A bf16 vector is 32 packed u16 pairs: the same 64 bytes as the integer vector (the
    // enclosing `unsafe` block covers the transmutes).
    let q = std::mem::transmute::<__m512i, __m512bh>(q);
    let b = std::mem::transmute::<__m512i, __m512bh>(b);
    _mm512_dpbf16_ps(acc, q, b)
});

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dots_within_bound(m in 1usize..20, n in 1usize..70, d in 1usize..40, seed in 0u64..1000, f32_kind: bool) {
            let kind = if f32_kind { Kind::F32 } else { Kind::Bf16 };
            let Some(simd) = Simd::available_levels().into_iter().find(|s| kind.runs_on(*s)) else {
                return Ok(());
            };
            let bound = if f32_kind { (d as f64 + 4.0) * f32::EPSILON as f64 } else { dot_error(d) };
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut rnd = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            };
            let q: Vec<f32> = (0..m * d).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n * d).map(|_| rnd() * 10.0).collect();
            let (mut qp, mut bp) = (Vec::new(), Vec::new());
            pack_queries(kind, &q, d, &mut qp);
            pack_base(kind, &b, d, &mut bp);
            let mut out = vec![0f32; m * n];
            dots(simd, kind, &qp, m, &bp, n, d, &mut out, n);
            for i in 0..m {
                for j in 0..n {
                    let (x, y) = (&q[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
                    let exact: f64 = x.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let nx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                    let ny: f64 = y.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                    let err = (out[i * n + j] as f64 - exact).abs();
                    prop_assert!(err <= bound * nx * ny + 1e-30, "err {} bound {}", err, bound * nx * ny);
                }
            }
        }
    }
}
