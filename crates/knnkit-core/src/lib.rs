//! # knnkit-core
//!
//! The pure-Rust engine behind knnkit: metrics with runtime-dispatched SIMD kernels, bounded top-k
//! selection, exact (brute-force) k-nearest and radius search, and KD / ball trees over f32 or f64
//! data. No Python here; the `knnkit-py` crate wraps it.
//!
//! ```
//! use knnkit_core::flat::{knn, Base, SearchParams};
//! use knnkit_core::metric::Metric;
//!
//! // three 2-d points, one query
//! let base = [0.0f64, 0.0, 3.0, 4.0, 1.0, 1.0];
//! let res = knn(&Base::new(&base, 2), &[0.0, 0.0], 2, Metric::Euclidean, &SearchParams::default())?;
//! assert_eq!(res.indices, vec![0, 2]);
//! assert_eq!(res.distances, vec![0.0, 2f64.sqrt()]);
//! # Ok::<(), knnkit_core::Error>(())
//! ```

pub mod db;
pub mod error;
pub mod filter;
pub mod flat;
pub mod float;
pub mod hnsw;
pub mod ids;
pub mod index;
pub mod io;
pub mod ivf;
pub mod kmeans;
pub mod mem;
pub mod metric;
pub mod pool;
pub mod quant;
pub mod rng;
pub mod sigbus;
pub mod simd;
pub mod store;
pub mod topk;
pub mod tree;
pub mod validate;

pub use error::{Error, Result};
pub use float::Float;
pub use metric::Metric;
