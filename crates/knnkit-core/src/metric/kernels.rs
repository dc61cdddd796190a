//! Distance kernels between two vectors: a plain scalar twin for each, and SIMD versions chosen at
//! run time.
//!
//! Design: every SIMD kernel is the same generic "lanes" loop (`L` independent accumulators, then a
//! scalar tail), instantiated inside a `#[target_feature]` wrapper so the compiler emits AVX-512,
//! AVX2+FMA (x86-64) or NEON (aarch64, always on) code for it. No intrinsics, no `unsafe` beyond the
//! call into a feature-gated function, and the summation order is fixed by `L`, so results are
//! reproducible on one machine. `*_naive` are the reference twins the property tests pin the SIMD
//! versions to. The set is chosen by a [`Simd`] token (see [`crate::simd`]): the per-level builds
//! are private, so only a level this CPU supports can be selected.

use crate::float::Float;
use crate::simd::{Level, Simd};

/// A kernel: reduces two equal-length slices to one number.
pub type Kernel<T> = fn(&[T], &[T]) -> T;

/// The dispatched kernels for one element type.
pub struct Kernels<T> {
    pub level: Level,
    /// Σ aᵢbᵢ
    pub dot: Kernel<T>,
    /// Σ (aᵢ − bᵢ)²
    pub sqeuclidean: Kernel<T>,
    /// Σ |aᵢ − bᵢ|
    pub manhattan: Kernel<T>,
    /// max |aᵢ − bᵢ|
    pub chebyshev: Kernel<T>,
}

// ---------------------------------------------------------------------------------------------
// Scalar twins (the reference semantics).

pub fn dot_naive<T: Float>(a: &[T], b: &[T]) -> T {
    let mut s = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

pub fn sqeuclidean_naive<T: Float>(a: &[T], b: &[T]) -> T {
    let mut s = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        let d = x - y;
        s += d * d;
    }
    s
}

pub fn manhattan_naive<T: Float>(a: &[T], b: &[T]) -> T {
    let mut s = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s += (x - y).abs();
    }
    s
}

pub fn chebyshev_naive<T: Float>(a: &[T], b: &[T]) -> T {
    let mut s = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s = s.max((x - y).abs());
    }
    s
}

/// Σ |aᵢ − bᵢ|ᵖ (the "reduced" Minkowski distance; the caller takes the p-th root).
pub fn minkowski_reduced<T: Float>(a: &[T], b: &[T], p: T) -> T {
    let mut s = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s += (x - y).abs().powf(p);
    }
    s
}

/// Fraction of coordinates that differ (scikit-learn's `hamming`).
pub fn hamming<T: Float>(a: &[T], b: &[T]) -> T {
    let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
    if a.is_empty() {
        T::ZERO
    } else {
        T::from_usize(diff) / T::from_usize(a.len())
    }
}

// ---------------------------------------------------------------------------------------------
// The lanes loop shared by every SIMD instantiation.

/// One step of a reduction: `acc ⊕ f(x, y)`.
trait Step<T> {
    fn step(acc: T, x: T, y: T) -> T;
    fn merge(a: T, b: T) -> T;
}

macro_rules! step {
    ($name:ident, |$acc:ident, $x:ident, $y:ident| $body:expr, |$a:ident, $b:ident| $merge:expr) => {
        struct $name<const FMA: bool>;
        impl<T: Float, const FMA: bool> Step<T> for $name<FMA> {
            #[inline(always)]
            fn step($acc: T, $x: T, $y: T) -> T {
                $body
            }
            #[inline(always)]
            fn merge($a: T, $b: T) -> T {
                $merge
            }
        }
    };
}

step!(
    DotStep,
    |acc, x, y| if FMA { x.mul_add(y, acc) } else { acc + x * y },
    |a, b| a + b
);
step!(
    SqStep,
    |acc, x, y| {
        let d = x - y;
        if FMA {
            d.mul_add(d, acc)
        } else {
            acc + d * d
        }
    },
    |a, b| a + b
);
step!(L1Step, |acc, x, y| acc + (x - y).abs(), |a, b| a + b);
step!(LinfStep, |acc, x, y| acc.max((x - y).abs()), |a, b| a
    .max(b));

#[inline(always)]
fn lanes<T: Float, S: Step<T>, const L: usize>(a: &[T], b: &[T]) -> T {
    /// Width of the second loop that handles most of the remainder.
    const W: usize = 8;
    const { assert!(L >= W && L.is_power_of_two()) };
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::ZERO; L];
    let split = n - n % L;
    for (xs, ys) in a[..split].chunks_exact(L).zip(b[..split].chunks_exact(L)) {
        for i in 0..L {
            acc[i] = S::step(acc[i], xs[i], ys[i]);
        }
    }
    // Remainder: W lanes at a time into the first W accumulators, then one by one.
    let split2 = n - (n - split) % W;
    for (xs, ys) in a[split..split2]
        .chunks_exact(W)
        .zip(b[split..split2].chunks_exact(W))
    {
        for i in 0..W {
            acc[i] = S::step(acc[i], xs[i], ys[i]);
        }
    }
    // Tree-reduce the lanes, then finish the tail.
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = S::merge(acc[i], acc[i + width]);
        }
    }
    let mut s = acc[0];
    for i in split2..n {
        s = S::step(s, a[i], b[i]);
    }
    s
}

/// Σ aᵢ·bf16(bᵢ): a float32 query against a row stored as bf16 bits (the upper half of an f32).
#[inline(always)]
fn dot_bf16_lanes<const L: usize, const FMA: bool>(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    let widen = |x: u16| f32::from_bits((x as u32) << 16);
    let mut acc = [0f32; L];
    let split = n - n % L;
    for (xs, ys) in a[..split].chunks_exact(L).zip(b[..split].chunks_exact(L)) {
        for i in 0..L {
            acc[i] = DotStep::<FMA>::step(acc[i], xs[i], widen(ys[i]));
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in split..n {
        s += a[i] * widen(b[i]);
    }
    s
}

/// Scalar twin of the bf16 row kernel.
pub fn dot_bf16_naive(a: &[f32], b: &[u16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x * f32::from_bits((y as u32) << 16))
        .sum()
}

/// A float32 × bf16-row dot-product kernel.
pub type Bf16Kernel = fn(&[f32], &[u16]) -> f32;

/// The bf16 row kernel of a level (the process's is `dot_bf16(Simd::get())`).
pub fn dot_bf16(simd: Simd) -> Bf16Kernel {
    match simd.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => avx512::dot_bf16,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => avx2::dot_bf16,
        _ => portable::dot_bf16,
    }
}

macro_rules! kernel_set {
    ($modname:ident, $level:expr, [$($feat:literal),*], f32 = $l32:literal, f64 = $l64:literal, $fma:literal) => {
        // Private: reachable only through a `Simd` token ([`KernelSets::set`], [`dot_bf16`]).
        mod $modname {
            use super::*;
            macro_rules! one {
                ($fname:ident, $step:ident, $t:ty, $l:literal) => {
                    $(#[target_feature(enable = $feat)])*
                    unsafe fn $fname(a: &[$t], b: &[$t]) -> $t {
                        lanes::<$t, $step<$fma>, $l>(a, b)
                    }
                };
            }
            one!(dot32, DotStep, f32, $l32);
            one!(sq32, SqStep, f32, $l32);
            one!(l132, L1Step, f32, $l32);
            one!(linf32, LinfStep, f32, $l32);
            one!(dot64, DotStep, f64, $l64);
            one!(sq64, SqStep, f64, $l64);
            one!(l164, L1Step, f64, $l64);
            one!(linf64, LinfStep, f64, $l64);

            $(#[target_feature(enable = $feat)])*
            unsafe fn dot_bf16_inner(a: &[f32], b: &[u16]) -> f32 {
                dot_bf16_lanes::<$l32, $fma>(a, b)
            }
            // SAFETY: handed out by `dot_bf16` only for a token of this level (features detected).
            pub(super) fn dot_bf16(a: &[f32], b: &[u16]) -> f32 {
                unsafe { dot_bf16_inner(a, b) }
            }

            // SAFETY (all wrappers): `KernelSets::set` hands these out only for a token of this
            // level, which proves the features were detected.
            pub(super) fn kernels_f32() -> Kernels<f32> {
                Kernels {
                    level: $level,
                    dot: |a, b| unsafe { dot32(a, b) },
                    sqeuclidean: |a, b| unsafe { sq32(a, b) },
                    manhattan: |a, b| unsafe { l132(a, b) },
                    chebyshev: |a, b| unsafe { linf32(a, b) },
                }
            }
            pub(super) fn kernels_f64() -> Kernels<f64> {
                Kernels {
                    level: $level,
                    dot: |a, b| unsafe { dot64(a, b) },
                    sqeuclidean: |a, b| unsafe { sq64(a, b) },
                    manhattan: |a, b| unsafe { l164(a, b) },
                    chebyshev: |a, b| unsafe { linf64(a, b) },
                }
            }
        }
    };
}

// Portable lanes build: vectorised for the baseline target (SSE2 on x86-64, NEON on aarch64).
kernel_set!(
    portable,
    Simd::scalar().level(),
    [],
    f32 = 16,
    f64 = 8,
    false
);
#[cfg(target_arch = "x86_64")]
kernel_set!(avx2, Level::Avx2, ["avx2", "fma"], f32 = 32, f64 = 16, true);
#[cfg(target_arch = "x86_64")]
kernel_set!(avx512, Level::Avx512, ["avx512f"], f32 = 64, f64 = 32, true);

/// Per-type hook: the kernel set of a level for this element type.
pub trait KernelSets: Sized {
    fn set(simd: Simd) -> Kernels<Self>;
}

impl KernelSets for f32 {
    fn set(simd: Simd) -> Kernels<f32> {
        match simd.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => avx512::kernels_f32(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => avx2::kernels_f32(),
            _ => portable::kernels_f32(),
        }
    }
}

impl KernelSets for f64 {
    fn set(simd: Simd) -> Kernels<f64> {
        match simd.level() {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => avx512::kernels_f64(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => avx2::kernels_f64(),
            _ => portable::kernels_f64(),
        }
    }
}

/// The kernels of this process's level ([`Simd::get`]).
pub fn select<T: KernelSets>() -> Kernels<T> {
    T::set(Simd::get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, scale: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * scale.max(1.0)
    }

    fn check<T: Float + KernelSets>(a: &[T], b: &[T], tol: f64) {
        let abs_dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.to_f64() * y.to_f64()).abs())
            .sum();
        let sq_scale: f64 = sqeuclidean_naive(a, b).to_f64();
        let l1_scale: f64 = manhattan_naive(a, b).to_f64();
        for simd in Simd::available_levels() {
            let k = T::set(simd);
            let name = simd.name();
            assert!(
                close(
                    (k.dot)(a, b).to_f64(),
                    dot_naive(a, b).to_f64(),
                    abs_dot,
                    tol
                ),
                "dot {name}"
            );
            assert!(
                close((k.sqeuclidean)(a, b).to_f64(), sq_scale, sq_scale, tol),
                "sq {name}"
            );
            assert!(
                close((k.manhattan)(a, b).to_f64(), l1_scale, l1_scale, tol),
                "l1 {name}"
            );
            // max is exact whatever the order
            assert_eq!(
                (k.chebyshev)(a, b).to_f64(),
                chebyshev_naive(a, b).to_f64(),
                "linf {name}"
            );
        }
    }

    proptest! {
        #[test]
        fn simd_matches_scalar_f32(pairs in prop::collection::vec((-100f32..100.0, -100f32..100.0), 0..300)) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            check(&a, &b, 1e-4);
        }

        #[test]
        fn simd_matches_scalar_f64(pairs in prop::collection::vec((-1e3f64..1e3, -1e3f64..1e3), 0..300)) {
            let (a, b): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            check(&a, &b, 1e-12);
        }
    }

    proptest! {
        #[test]
        fn bf16_row_kernel_matches_scalar(pairs in prop::collection::vec((-100f32..100.0, any::<u16>()), 0..300)) {
            let (a, mut b): (Vec<f32>, Vec<u16>) = pairs.into_iter().unzip();
            // keep the bf16 values finite
            b.iter_mut().for_each(|x| *x &= 0xBFFF);
            let naive = dot_bf16_naive(&a, &b) as f64;
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * f32::from_bits((*y as u32) << 16) as f64).abs()).sum();
            for simd in Simd::available_levels() {
                prop_assert!((dot_bf16(simd)(&a, &b) as f64 - naive).abs() <= 1e-4 * scale.max(1.0), "{}", simd.name());
            }
        }
    }

    #[test]
    fn hamming_counts_fraction() {
        assert_eq!(
            hamming(&[1.0f64, 0.0, 2.0, 3.0], &[1.0, 1.0, 2.0, 0.0]),
            0.5
        );
        assert_eq!(hamming::<f32>(&[], &[]), 0.0);
    }
}
