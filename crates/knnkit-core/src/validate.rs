//! Checks shared by every index: what data can be searched, the limits on sizes that decide an
//! allocation, and fallible allocation for sizes that come from input.
//!
//! Every size a caller or a file chooses (a dimension, a number of lists, `k`, a count in a
//! header) is checked against a limit here *before* anything is allocated, so a mistyped or
//! crafted value is a clear error, never an abort ("memory allocation failed") or gigabytes
//! allocated before a refusal. Arrays sized from input are reserved with `try_reserve`.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::metric::squared_norms;

/// Largest dimension of an index.
pub const MAX_DIM: usize = 1 << 20;
/// Largest number of IVF lists (faiss's largest common setting is 2^20 lists).
pub const MAX_NLIST: usize = 1 << 22;
/// Largest beam width (`ef_search`, `ef_construction`); the work is capped at the index size
/// anyway.
pub const MAX_EF: usize = 1 << 31;
/// Largest number of values (nq × k) a search result may hold: as many (id, distance) pairs
/// of 12 bytes as fit in a quarter of this machine's memory ([`crate::mem::physical_memory`]).
/// Larger requests are refused before anything is allocated: a `k` far above what an index
/// holds would otherwise spend gigabytes on padding.
pub fn max_result_values() -> usize {
    crate::mem::physical_memory() / 4 / 12
}
/// Largest number of slots an index can hold: slots are `u32`, and `u32::MAX` means "none".
pub const MAX_SLOTS: usize = u32::MAX as usize - 1;

/// Refuses rows that a search cannot rank: non-finite values, and rows whose squared norm
/// exceeds a quarter of float32's largest value (some distance to them would overflow). `data`
/// holds rows of `dim` values; `what` names the array in the error, which also names the first
/// bad row. See [`checked_norms`].
pub fn check_searchable(data: &[f32], dim: usize, what: &str) -> Result<()> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::DimensionMismatch {
            expected: dim,
            got: if dim == 0 {
                data.len()
            } else {
                data.len() % dim
            },
        });
    }
    checked_norms(data, dim, what).map(|_| ())
}

/// The squared norms of rows that can be stored and searched, or an error naming the first
/// row that cannot: rows must hold finite values whose squared norm is at most a quarter of
/// `T`'s largest value, so that no distance between two such rows overflows to infinity. One
/// SIMD pass; the norms are what the dot-based metrics keep anyway.
pub fn checked_norms<T: Float>(data: &[T], dim: usize, what: &str) -> Result<Vec<T>> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::Shape {
            name: "vectors",
            expected: data.len().div_ceil(dim.max(1)) * dim,
            got: data.len(),
        });
    }
    let norms = squared_norms(data, dim);
    let limit = if T::NAME == "float32" {
        f64::from(f32::MAX)
    } else {
        f64::MAX
    } / 4.0;
    // NaN or infinite values give a NaN or infinite norm.
    if let Some(i) = norms
        .iter()
        .position(|n| !n.to_f64().is_finite() || n.to_f64() > limit)
    {
        return Err(Error::InvalidParameter {
            name: "vectors",
            expected: format!(
                "finite values in {what} whose squared norm is at most {limit:e} in {}",
                T::NAME
            ),
            got: format!("row {i} with squared norm {:e}", norms[i].to_f64()),
        });
    }
    Ok(norms)
}

/// `value` as a count in `[min, max]`, or an [`Error::InvalidParameter`] naming it.
pub fn check_range(name: &'static str, value: usize, min: usize, max: usize) -> Result<usize> {
    if value < min || value > max {
        return Err(Error::param(
            name,
            format!("an integer in [{min}, {max}]"),
            value,
        ));
    }
    Ok(value)
}

/// The number of values of an `nq × k` result, refused when it exceeds
/// [`max_result_values`] (before anything is allocated).
pub fn result_size(nq: usize, k: usize) -> Result<usize> {
    let max = max_result_values();
    match nq.checked_mul(k) {
        Some(n) if n <= max => Ok(n),
        _ => Err(Error::param(
            "k",
            format!(
                "k >= 1 with queries × k at most {max} \
                 (a result that can be allocated)"
            ),
            format!("k = {k} for {nq} queries"),
        )),
    }
}

/// A vector of `n` copies of `value`, or an error naming `what` when the memory cannot be
/// reserved (instead of an abort).
pub fn try_filled<T: Clone>(what: &'static str, n: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_grow(&mut v, n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// Reserves room for `additional` more items, or an error naming `what`.
pub fn try_grow<T>(v: &mut Vec<T>, additional: usize, what: &'static str) -> Result<()> {
    v.try_reserve(additional).map_err(|_| {
        Error::param(
            what,
            "a size that can be allocated",
            format!(
                "{additional} more items of {} bytes",
                std::mem::size_of::<T>()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searchable_rows() {
        assert!(check_searchable(&[1.0, 2.0, 3.0, 4.0], 2, "X").is_ok());
        let e = check_searchable(&[1.0, 2.0, f32::NAN, 4.0], 2, "X").unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        let e = check_searchable(&[1.0, 2.0, 1e30, 3e38], 2, "X").unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        assert!(check_searchable(&[1e18, 1e18], 2, "X").is_ok());
        assert!(check_searchable(&[1.0, 2.0, 3.0], 2, "X").is_err());
    }

    #[test]
    fn result_limits() {
        assert_eq!(result_size(10, 10).unwrap(), 100);
        assert!(result_size(1, 1 << 40).is_err());
        assert!(result_size(usize::MAX, 2).is_err());
        assert!(try_filled("x", usize::MAX / 2, 0u64).is_err());
    }
}
