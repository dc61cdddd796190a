//! `Float`: the two element types the core computes in (f32 and f64), end to end.
//!
//! Nothing is silently upcast: f32 data gives f32 distances. Each type carries its dispatched SIMD
//! kernels (see [`crate::metric::kernels`]) and its matrix-product routine for the tiled search.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use crate::metric::kernels::{self, Kernels};

/// A floating-point element type the core can search over.
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const EPSILON: Self;
    /// Smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// Name as numpy spells it.
    const NAME: &'static str;

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_usize(v: usize) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn is_finite(self) -> bool;
    /// The kernels picked for this CPU (chosen once, at first use).
    fn kernels() -> &'static Kernels<Self>;
    /// The slice as float32, when `Self` is f32 (for the float32-only bf16 pass).
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;

    fn is_f32() -> bool {
        Self::as_f32(&[]).is_some()
    }

    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }
}

macro_rules! impl_float {
    ($t:ident, $name:literal, $as32:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = $t::INFINITY;
            const EPSILON: Self = $t::EPSILON;
            const MIN_POSITIVE: Self = $t::MIN_POSITIVE;
            const NAME: &'static str = $name;

            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                $t::powf(self, p)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                $t::mul_add(self, a, b)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            fn as_f32(s: &[Self]) -> Option<&[f32]> {
                $as32(s)
            }
            fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $as32(s)
            }
            fn kernels() -> &'static Kernels<Self> {
                static K: std::sync::OnceLock<Kernels<$t>> = std::sync::OnceLock::new();
                K.get_or_init(kernels::select::<$t>)
            }
        }
    };
}

impl_float!(f32, "float32", Some);
impl_float!(f64, "float64", |_| None);
