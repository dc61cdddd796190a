//! KD-tree bounds: each node's tight axis-aligned box (`bounds[0]` lower, `bounds[1]` upper
//! corner). The gap between a point and a box on one axis is max(lo − x, x − hi, 0) — the same
//! value as scikit-learn's ½((lo − x) + |lo − x| + (x − hi) + |x − hi|), computed without the
//! absolute values.

use crate::float::Float;

use super::{Bounds, Ops, TreeView};

/// Marker for the KD-tree's [`Bounds`].
pub struct KdBounds;

#[inline(always)]
fn max3<T: Float>(a: T, b: T) -> T {
    let m = if a > b { a } else { b };
    if m > T::ZERO {
        m
    } else {
        T::ZERO
    }
}

impl<T: Float> Bounds<T> for KdBounds {
    const CALLS: u64 = 0;

    #[inline(always)]
    fn min_rdist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> T {
        let (lo, hi) = (t.bound(0, node), t.bound(1, node));
        let mut s = T::ZERO;
        for ((&l, &h), &x) in lo.iter().zip(hi).zip(q) {
            s = m.fold(s, m.pow(max3(l - x, x - h)));
        }
        s
    }

    #[inline(always)]
    fn min_max_dist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> (T, T) {
        let (lo, hi) = (t.bound(0, node), t.bound(1, node));
        let (mut near, mut far) = (T::ZERO, T::ZERO);
        for ((&l, &h), &x) in lo.iter().zip(hi).zip(q) {
            let (dlo, dhi) = (l - x, x - h);
            near = m.fold(near, m.pow(max3(dlo, dhi)));
            far = m.fold(far, m.pow(dlo.abs().max(dhi.abs())));
        }
        (m.rdist_to_dist(near), m.rdist_to_dist(far))
    }

    #[inline(always)]
    fn min_rdist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> T {
        let (alo, ahi) = (a.bound(0, na), a.bound(1, na));
        let (blo, bhi) = (b.bound(0, nb), b.bound(1, nb));
        let mut s = T::ZERO;
        for j in 0..alo.len() {
            s = m.fold(s, m.pow(max3(alo[j] - bhi[j], blo[j] - ahi[j])));
        }
        s
    }

    #[inline(always)]
    fn min_max_dist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> (T, T) {
        let (alo, ahi) = (a.bound(0, na), a.bound(1, na));
        let (blo, bhi) = (b.bound(0, nb), b.bound(1, nb));
        let (mut near, mut far) = (T::ZERO, T::ZERO);
        for j in 0..alo.len() {
            let (d1, d2) = (alo[j] - bhi[j], blo[j] - ahi[j]);
            near = m.fold(near, m.pow(max3(d1, d2)));
            let f = (alo[j] - bhi[j]).abs().max((ahi[j] - blo[j]).abs());
            far = m.fold(far, m.pow(f));
        }
        (m.rdist_to_dist(near), m.rdist_to_dist(far))
    }
}
