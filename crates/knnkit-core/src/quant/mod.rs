//! Vector quantizers: compact codes that approximate stored vectors for fast traversal and
//! scanning, always followed by an exact re-rank on the float32 vectors.

/// Defines `$for(simd)`, the integer kernel of a SIMD level (the module's `x86_int::avx512bw`
/// build where the token allows AVX-512BW, `x86_int::avx2` at AVX2 or AVX-512 otherwise, the
/// scalar twin `$naive` elsewhere), and `$get()`, the kernel at the process's level.
macro_rules! int_dispatch {
    ($what:literal, $for:ident, $get:ident, $naive:ident) => {
        #[doc = concat!("The integer × ", $what, " kernel for a SIMD level (AVX-512 needs BW as well; AVX2 otherwise).")]
        pub fn $for(simd: $crate::simd::Simd) -> I16Kernel {
            use $crate::simd::Level;
            match simd.level() {
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 if simd.avx512bw() => x86_int::avx512bw,
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 | Level::Avx2 => x86_int::avx2,
                _ => $naive,
            }
        }

        #[doc = concat!("The integer × ", $what, " kernel at the process's level ([`Simd::get`](crate::simd::Simd::get)).")]
        pub fn $get() -> I16Kernel {
            $for($crate::simd::Simd::get())
        }
    };
}

pub mod pq;
pub mod sq4;
pub mod sq8;

pub use pq::Pq;
pub use sq4::Sq4;
pub use sq8::Sq8;
