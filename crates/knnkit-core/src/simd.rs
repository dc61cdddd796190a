//! The CPU-feature dispatch: which SIMD build of the kernels this process runs.
//!
//! Design: the level is detected once per process ([`Simd::get`], a `OnceLock`) and handed to
//! kernels as a [`Simd`] *token*, a proof that this CPU runs that level's instructions. Safe code
//! can only obtain a token from detection ([`Simd::get`], [`Simd::available_levels`]) or the
//! portable build ([`Simd::scalar`], valid everywhere), so no safe function can be asked to run
//! instructions the CPU lacks. Each kernel family maps a token to its build (`match
//! simd.level()`), and the `#[target_feature]` wrappers are private to their modules.
//!
//! Levels: `avx512` (AVX-512F, with AVX2 and FMA), `avx2` (AVX2 and FMA), and the portable build
//! (`scalar`: SSE2 on x86-64, NEON on aarch64, named `neon` there). Two extra AVX-512 features are
//! recorded with the token for the kernels that need them: BW (the SQ8/SQ4 integer kernels; AVX2
//! builds otherwise) and BF16 (the bf16 tile of the exact search).
//!
//! Override: `KNNKIT_SIMD=scalar|avx2|avx512`, read once (at the first [`Simd::get`]), forces a
//! level for tests and benchmarks. A forced level above what the CPU has is clamped to the best it
//! has (`avx512` on an AVX2 machine runs AVX2), so the variable can never select unsupported
//! instructions; any other value is ignored. Results are reproducible per level: each build fixes
//! its summation order.

use std::sync::OnceLock;

/// The instruction set a kernel build targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The portable build on x86-64 (SSE2, the baseline target).
    Scalar,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
    /// The portable build on aarch64 (NEON is part of the baseline there).
    Neon,
}

impl Level {
    /// Name as `knnkit.simd_level()` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2+fma",
            Level::Avx512 => "avx512f",
            Level::Neon => "neon",
        }
    }
}

/// A SIMD level this CPU supports: obtainable only from detection, so holding one proves the
/// instructions of its level (and of every kernel build that accepts it) are safe to run.
///
/// ```
/// use knnkit_core::simd::Simd;
/// let simd = Simd::get(); // the process's level
/// assert!(Simd::available_levels().contains(&simd));
/// println!("kernels: {}", simd.name());
/// ```
///
/// Safe code cannot make one up:
///
/// ```compile_fail
/// use knnkit_core::simd::{Level, Simd};
/// let forged = Simd { level: Level::Avx512, avx512bw: true, avx512bf16: true };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Simd {
    level: Level,
    /// AVX-512BW present (only set with `Level::Avx512`).
    avx512bw: bool,
    /// AVX-512 BF16 present (only set with `Level::Avx512`).
    avx512bf16: bool,
}

/// What the CPU offers, detected once.
struct Cpu {
    avx2: bool,
    avx512: bool,
    avx512bw: bool,
    avx512bf16: bool,
}

fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
            Cpu {
                avx2,
                avx512,
                avx512bw: avx512 && std::is_x86_feature_detected!("avx512bw"),
                avx512bf16: avx512 && std::is_x86_feature_detected!("avx512bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Cpu {
                avx2: false,
                avx512: false,
                avx512bw: false,
                avx512bf16: false,
            }
        }
    })
}

/// The portable level of this target.
const fn portable_level() -> Level {
    if cfg!(target_arch = "aarch64") {
        Level::Neon
    } else {
        Level::Scalar
    }
}

impl Simd {
    /// The level this process runs: the best the CPU supports, or the lower one forced by
    /// `KNNKIT_SIMD` (see the module documentation). Detected once; later calls are a load.
    pub fn get() -> Simd {
        static CHOSEN: OnceLock<Simd> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let forced = std::env::var("KNNKIT_SIMD").ok();
            Simd::choose(forced.as_deref())
        })
    }

    /// The level for a `KNNKIT_SIMD` value (`None`: not set), clamped to what the CPU has.
    fn choose(forced: Option<&str>) -> Simd {
        let best = Simd::available_levels().pop().unwrap_or_else(Simd::scalar);
        let want = match forced.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("scalar") => Level::Scalar,
            Some("avx2") => Level::Avx2,
            Some("avx512") => Level::Avx512,
            _ => return best,
        };
        // The highest supported level not above the one asked for.
        let rank = |l: Level| match l {
            Level::Scalar | Level::Neon => 0,
            Level::Avx2 => 1,
            Level::Avx512 => 2,
        };
        Simd::available_levels()
            .into_iter()
            .rfind(|s| rank(s.level) <= rank(want))
            .unwrap_or_else(Simd::scalar)
    }

    /// The portable build, valid on every CPU.
    pub const fn scalar() -> Simd {
        Simd {
            level: portable_level(),
            avx512bw: false,
            avx512bf16: false,
        }
    }

    /// Every level this CPU supports, lowest first (the portable build, then AVX2, then
    /// AVX-512): for tests that pin each build to its scalar twin.
    pub fn available_levels() -> Vec<Simd> {
        let cpu = cpu();
        let mut v = vec![Simd::scalar()];
        if cpu.avx2 {
            v.push(Simd {
                level: Level::Avx2,
                avx512bw: false,
                avx512bf16: false,
            });
        }
        if cpu.avx512 {
            v.push(Simd {
                level: Level::Avx512,
                avx512bw: cpu.avx512bw,
                avx512bf16: cpu.avx512bf16,
            });
        }
        v
    }

    /// The level this token allows.
    pub fn level(self) -> Level {
        self.level
    }

    /// The level's name (`scalar`, `avx2+fma`, `avx512f`, `neon`).
    pub fn name(self) -> &'static str {
        self.level.name()
    }

    /// True when AVX-512BW may run (AVX-512 level on a CPU that has it).
    pub fn avx512bw(self) -> bool {
        self.avx512bw
    }

    /// True when AVX-512 BF16 may run (AVX-512 level on a CPU that has it).
    pub fn avx512bf16(self) -> bool {
        self.avx512bf16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_levels_are_clamped_to_the_cpu() {
        let levels = Simd::available_levels();
        let best = *levels.last().unwrap();
        assert_eq!(Simd::choose(None), best);
        assert_eq!(Simd::choose(Some("bogus")), best);
        assert_eq!(Simd::choose(Some("scalar")), Simd::scalar());
        assert_eq!(Simd::choose(Some("avx512")), best);
        let avx2 = Simd::choose(Some("AVX2"));
        assert!(levels.contains(&avx2));
        assert!(matches!(avx2.level(), Level::Avx2) || levels.len() == 1);
        // a token never claims a feature above its level
        for s in levels {
            assert!(s.level() == Level::Avx512 || !(s.avx512bw() || s.avx512bf16()));
        }
        assert!(Simd::available_levels().contains(&Simd::get()));
    }
}
