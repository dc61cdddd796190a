//! Block kernels: reduced distances from one query to eight tree rows at once.
//!
//! The tree keeps its rows in blocks of [`LANES`] positions stored dimension-major (`d × 8`
//! values per block), so one pass over the query's coordinates updates eight accumulators — one
//! per row, each summed in coordinate order exactly as the row-at-a-time loop (and scikit-learn)
//! sums it, with no fused multiply-add. The eight lanes vectorise; the kernels are compiled for
//! AVX-512 and AVX2 as well as the baseline and chosen by the process's [`Simd`] token, like the
//! metric kernels.

use std::any::Any;
use std::sync::OnceLock;

use crate::float::Float;
use crate::simd::{Level, Simd};

/// Rows per block.
pub const LANES: usize = 8;

/// Reduced distances from a query (d values) to the rows of one block (d × LANES values).
pub(crate) type Block<T> = fn(&[T], &[T]) -> [T; LANES];

#[inline(always)]
pub(crate) fn sq<T: Float>(q: &[T], blk: &[T]) -> [T; LANES] {
    let mut acc = [T::ZERO; LANES];
    for (col, &x) in blk.chunks_exact(LANES).zip(q) {
        for l in 0..LANES {
            let t = x - col[l];
            acc[l] += t * t;
        }
    }
    acc
}

#[inline(always)]
pub(crate) fn l1<T: Float>(q: &[T], blk: &[T]) -> [T; LANES] {
    let mut acc = [T::ZERO; LANES];
    for (col, &x) in blk.chunks_exact(LANES).zip(q) {
        for l in 0..LANES {
            acc[l] += (x - col[l]).abs();
        }
    }
    acc
}

#[inline(always)]
pub(crate) fn linf<T: Float>(q: &[T], blk: &[T]) -> [T; LANES] {
    let mut acc = [T::ZERO; LANES];
    for (col, &x) in blk.chunks_exact(LANES).zip(q) {
        for l in 0..LANES {
            acc[l] = acc[l].max((x - col[l]).abs());
        }
    }
    acc
}

/// Σ |q − x|ᵖ per row (scalar `powf`, in coordinate order).
#[inline(always)]
pub(crate) fn minkowski<T: Float>(q: &[T], blk: &[T], p: T) -> [T; LANES] {
    let mut acc = [T::ZERO; LANES];
    for (col, &x) in blk.chunks_exact(LANES).zip(q) {
        for l in 0..LANES {
            acc[l] += (x - col[l]).abs().powf(p);
        }
    }
    acc
}

/// The dispatched block kernels of one element type.
pub(crate) struct BlockKernels<T> {
    pub sq: Block<T>,
    pub l1: Block<T>,
    pub linf: Block<T>,
}

macro_rules! block_set {
    ($modname:ident, [$($feat:literal),*]) => {
        #[allow(clippy::missing_safety_doc)]
        mod $modname {
            use super::*;
            macro_rules! one {
                ($name:ident, $f:ident, $t:ty) => {
                    $(#[target_feature(enable = $feat)])*
                    unsafe fn $name(q: &[$t], blk: &[$t]) -> [$t; LANES] {
                        $f::<$t>(q, blk)
                    }
                };
            }
            one!(sq32, sq, f32);
            one!(l132, l1, f32);
            one!(linf32, linf, f32);
            one!(sq64, sq, f64);
            one!(l164, l1, f64);
            one!(linf64, linf, f64);
            // SAFETY (all wrappers): `BlockSets::set` hands these out only for a token of this
            // level, which proves the features were detected.
            pub(super) fn f32s() -> BlockKernels<f32> {
                BlockKernels {
                    sq: |q, b| unsafe { sq32(q, b) },
                    l1: |q, b| unsafe { l132(q, b) },
                    linf: |q, b| unsafe { linf32(q, b) },
                }
            }
            pub(super) fn f64s() -> BlockKernels<f64> {
                BlockKernels {
                    sq: |q, b| unsafe { sq64(q, b) },
                    l1: |q, b| unsafe { l164(q, b) },
                    linf: |q, b| unsafe { linf64(q, b) },
                }
            }
        }
    };
}

block_set!(portable, []);
#[cfg(target_arch = "x86_64")]
block_set!(avx2, ["avx2", "fma"]);
#[cfg(target_arch = "x86_64")]
block_set!(avx512, ["avx512f"]);

/// Per-type hook: the block kernels of a level for this element type.
pub(crate) trait BlockSets: Sized {
    fn set(simd: Simd) -> BlockKernels<Self>;
}

macro_rules! block_sets {
    ($t:ty, $get:ident) => {
        impl BlockSets for $t {
            fn set(simd: Simd) -> BlockKernels<$t> {
                match simd.level() {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => avx512::$get(),
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => avx2::$get(),
                    _ => portable::$get(),
                }
            }
        }
    };
}
block_sets!(f32, f32s);
block_sets!(f64, f64s);

/// The block kernels for `T` at the process's level ([`Simd::get`]; built once).
pub(crate) fn kernels<T: Float>() -> &'static BlockKernels<T> {
    static F32: OnceLock<BlockKernels<f32>> = OnceLock::new();
    static F64: OnceLock<BlockKernels<f64>> = OnceLock::new();
    let any: &dyn Any = if T::is_f32() {
        F32.get_or_init(|| f32::set(Simd::get()))
    } else {
        F64.get_or_init(|| f64::set(Simd::get()))
    };
    any.downcast_ref::<BlockKernels<T>>()
        .expect("Float is implemented for f32 and f64 only")
}

/// Packs rows (row-major, n × d) into blocks: position p is lane p % 8 of block p / 8, the
/// padding lanes of the last block are zero.
pub fn pack_blocks<T: Float>(rows: &[T], d: usize) -> Vec<T> {
    let n = rows.len().checked_div(d).unwrap_or(0);
    let nb = n.div_ceil(LANES);
    let mut out = vec![T::ZERO; nb * d * LANES];
    for (p, row) in rows.chunks_exact(d.max(1)).enumerate() {
        let base = (p / LANES) * d * LANES + p % LANES;
        for (j, &x) in row.iter().enumerate() {
            out[base + j * LANES] = x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn block_kernels_equal_row_sums_bit_for_bit(
            d in 1usize..40,
            vals in prop::collection::vec(-100f64..100.0, 9 * 40),
        ) {
            let q = &vals[..d];
            let rows: Vec<f64> = vals[d..d + 8 * d].to_vec();
            let blk = pack_blocks(&rows, d);
            for simd in Simd::available_levels() {
                let k = f64::set(simd);
                let (s, a, m) = ((k.sq)(q, &blk), (k.l1)(q, &blk), (k.linf)(q, &blk));
                for (l, row) in rows.chunks_exact(d).enumerate() {
                    let (mut s0, mut a0, mut m0) = (0.0f64, 0.0f64, 0.0f64);
                    for j in 0..d {
                        let t = q[j] - row[j];
                        s0 += t * t;
                        a0 += t.abs();
                        m0 = m0.max(t.abs());
                    }
                    prop_assert_eq!(s[l], s0);
                    prop_assert_eq!(a[l], a0);
                    prop_assert_eq!(m[l], m0);
                }
                let q32: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                let r32: Vec<f32> = rows.iter().map(|&x| x as f32).collect();
                let s32 = (f32::set(simd).sq)(&q32, &pack_blocks(&r32, d));
                for (l, row) in r32.chunks_exact(d).enumerate() {
                    let mut s0 = 0.0f32;
                    for j in 0..d {
                        let t = q32[j] - row[j];
                        s0 += t * t;
                    }
                    prop_assert_eq!(s32[l], s0);
                }
            }
        }
    }
}
