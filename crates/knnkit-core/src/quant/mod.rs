//! Vector quantizers: compact codes that approximate stored vectors for fast traversal and
//! scanning, always followed by an exact re-rank on the float32 vectors.

pub mod pq;
pub mod sq4;
pub mod sq8;

pub use pq::Pq;
pub use sq4::Sq4;
pub use sq8::Sq8;
