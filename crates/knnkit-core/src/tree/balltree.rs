//! Ball-tree bounds: each node's centroid (`bounds[0]`) and radius (the largest distance from the
//! centroid to one of its points, in `nodes`). By the triangle inequality a point at distance
//! `δ` from the centroid is between `max(0, δ − r)` and `δ + r` from every point of the node —
//! one distance computation per bound, for any metric.

use crate::float::Float;

use super::{Bounds, Ops, TreeView};

/// Marker for the ball tree's [`Bounds`].
pub struct BallBounds;

/// How far the rounded `δ ∓ r` can be on the wrong side of the exact bound: the distance
/// `δ` (d terms) and the subtraction each round, by at most (d + 2)·ε relative; the bounds are
/// widened by twice that, so that a node holding a point exactly at the k-th distance (or the
/// radius) is never pruned (its lower-index tie would be lost) nor taken whole.
#[inline(always)]
fn slack<T: Float>(d: usize, dist: T, r: T) -> T {
    (dist + r) * T::from_usize(2 * (d + 2)) * T::EPSILON
}

#[inline(always)]
fn positive<T: Float>(x: T) -> T {
    if x > T::ZERO {
        x
    } else {
        T::ZERO
    }
}

impl<T: Float> Bounds<T> for BallBounds {
    const CALLS: u64 = 1;

    #[inline(always)]
    fn min_rdist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> T {
        let dist = m.dist(q, t.bound(0, node));
        let r = T::from_f64(t.nodes[node].radius);
        m.dist_to_rdist(positive(dist - r - slack(q.len(), dist, r)))
    }

    #[inline(always)]
    fn min_max_dist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> (T, T) {
        let dist = m.dist(q, t.bound(0, node));
        let r = T::from_f64(t.nodes[node].radius);
        let e = slack(q.len(), dist, r);
        (positive(dist - r - e), dist + r + e)
    }

    #[inline(always)]
    fn min_rdist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> T {
        m.dist_to_rdist(Self::min_max_dist_dual(a, na, b, nb, m).0)
    }

    #[inline(always)]
    fn min_max_dist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> (T, T) {
        // Subtract and add the radii one at a time, in scikit-learn's order.
        let dist = m.dist(b.bound(0, nb), a.bound(0, na));
        let (ra, rb) = (
            T::from_f64(a.nodes[na].radius),
            T::from_f64(b.nodes[nb].radius),
        );
        let e = slack(a.d, dist, ra + rb);
        (positive(dist - ra - rb - e), dist + ra + rb + e)
    }
}
