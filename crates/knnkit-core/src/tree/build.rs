//! Building a tree: scikit-learn's recursive median split, with subtrees built in parallel.
//!
//! Each node is initialised from its points in their current order (bounds or centroid and
//! radius), then split on the dimension of largest spread at `n_points / 2` by [`nth_element`]
//! over (value, row number). Parallel subtrees work on disjoint halves of `idx_array` and return
//! their nodes, which are written into the flat arrays at the end.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::pool;

use super::select::nth_element;
use super::{tree_shape, with_ops, Kind, Node, Ops, Tree, TreeMetric};

/// Subtrees with more points than this are built in parallel with their sibling.
const PAR_MIN_POINTS: usize = 16_384;

/// One built node: its id, its data and its bound rows (`bound_rows × d` values).
struct Built<T> {
    id: usize,
    node: Node,
    bound: Vec<T>,
}

struct Ctx<'a, T, M> {
    kind: Kind,
    m: M,
    p: f64,
    data: &'a [T],
    d: usize,
    weights: Option<&'a [T]>,
    n_nodes: usize,
}

impl<T: Float> Tree<T> {
    /// Builds a tree over the rows of `data` (row-major, `d` columns) on `threads` threads.
    ///
    /// ```
    /// use knnkit_core::tree::{Kind, Tree, TreeMetric};
    /// let x = [0.0f64, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0];
    /// let tree = Tree::build(&x, 2, Kind::KdTree, TreeMetric::Euclidean, 1, None, 1)?;
    /// assert_eq!(tree.nodes.len(), 3);
    /// assert_eq!(tree.nodes[0].idx_end, 4);
    /// # Ok::<(), knnkit_core::Error>(())
    /// ```
    pub fn build(
        data: &[T],
        d: usize,
        kind: Kind,
        metric: TreeMetric,
        leaf_size: usize,
        weights: Option<&[T]>,
        threads: usize,
    ) -> Result<Tree<T>> {
        if d == 0 {
            return Err(Error::param("dimension", "at least 1 feature", 0));
        }
        if !data.len().is_multiple_of(d) {
            return Err(Error::Shape {
                name: "data",
                expected: data.len() / d * d,
                got: data.len(),
            });
        }
        let n = data.len() / d;
        if n == 0 {
            return Err(Error::param("data", "at least one sample", 0));
        }
        if leaf_size == 0 {
            return Err(Error::param("leaf_size", "leaf_size >= 1", 0));
        }
        if !data.iter().all(|x| x.is_finite()) {
            return Err(Error::param("data", "finite values", "NaN or infinity"));
        }
        if let Some(w) = weights {
            if w.len() != n {
                return Err(Error::Shape {
                    name: "sample_weight",
                    expected: n,
                    got: w.len(),
                });
            }
            if !w.iter().all(|x| x.is_finite()) {
                return Err(Error::param(
                    "sample_weight",
                    "finite values",
                    "NaN or infinity",
                ));
            }
        }
        let (_, n_nodes) = tree_shape(n, leaf_size);
        let rows = kind.bound_rows();
        let mut idx: Vec<i64> = (0..n as i64).collect();
        let built = with_ops!(metric, T, |m| {
            let ctx = Ctx {
                kind,
                m,
                p: metric.p(),
                data,
                d,
                weights,
                n_nodes,
            };
            pool::install(threads, || {
                let mut out = Vec::with_capacity(n_nodes);
                build_node(&ctx, &mut idx, 0, 0, &mut out);
                out
            })
        });
        let mut nodes = vec![
            Node {
                idx_start: 0,
                idx_end: 0,
                is_leaf: true,
                radius: 0.0,
            };
            n_nodes
        ];
        let mut bounds = vec![T::ZERO; rows * n_nodes * d];
        for b in built {
            nodes[b.id] = b.node;
            for r in 0..rows {
                let off = (r * n_nodes + b.id) * d;
                bounds[off..off + d].copy_from_slice(&b.bound[r * d..(r + 1) * d]);
            }
        }
        let mut sorted = Vec::with_capacity(n * d);
        for &i in &idx {
            let i = i as usize;
            sorted.extend_from_slice(&data[i * d..(i + 1) * d]);
        }
        let blocks = super::kernels::pack_blocks(&sorted, d);
        drop(sorted);
        let weights = weights.map(|w| idx.iter().map(|&i| w[i as usize]).collect());
        Ok(Tree {
            kind,
            metric,
            d,
            leaf_size,
            blocks,
            idx_array: idx,
            nodes,
            bounds,
            weights,
        })
    }
}

/// Builds node `id` over `idx` (which starts at `start` in `idx_array`) and its subtree.
fn build_node<T: Float, M: Ops<T>>(
    ctx: &Ctx<T, M>,
    idx: &mut [i64],
    start: usize,
    id: usize,
    out: &mut Vec<Built<T>>,
) {
    let n_points = idx.len();
    let (bound, radius) = match ctx.kind {
        Kind::KdTree => init_kd(ctx, idx),
        Kind::BallTree => init_ball(ctx, idx),
    };
    let leaf = 2 * id + 1 >= ctx.n_nodes || n_points < 2;
    let split_dim = if leaf {
        0
    } else {
        match ctx.kind {
            Kind::KdTree => widest(&bound[..ctx.d], &bound[ctx.d..]),
            Kind::BallTree => {
                let (lo, hi) = extent(ctx, idx);
                widest(&lo, &hi)
            }
        }
    };
    out.push(Built {
        id,
        node: Node {
            idx_start: start,
            idx_end: start + n_points,
            is_leaf: leaf,
            radius,
        },
        bound,
    });
    if leaf {
        return;
    }
    let mid = n_points / 2;
    partition(ctx, idx, split_dim, mid);
    let (left, right) = idx.split_at_mut(mid);
    let (l, r) = (2 * id + 1, 2 * id + 2);
    if n_points > PAR_MIN_POINTS {
        let (a, b) = rayon::join(
            || {
                let mut v = Vec::new();
                build_node(ctx, left, start, l, &mut v);
                v
            },
            || {
                let mut v = Vec::new();
                build_node(ctx, right, start + mid, r, &mut v);
                v
            },
        );
        out.extend(a);
        out.extend(b);
    } else {
        build_node(ctx, left, start, l, out);
        build_node(ctx, right, start + mid, r, out);
    }
}

#[inline]
fn row<'a, T, M>(ctx: &Ctx<'a, T, M>, i: i64) -> &'a [T] {
    let i = i as usize;
    &ctx.data[i * ctx.d..(i + 1) * ctx.d]
}

/// KD node: the tight box of its points, and scikit-learn's radius (the box's half-diagonal
/// measured with the metric; note that for p = ∞ it computes pow(r, 1/∞) = 1).
fn init_kd<T: Float, M: Ops<T>>(ctx: &Ctx<T, M>, idx: &[i64]) -> (Vec<T>, f64) {
    let d = ctx.d;
    let mut b = vec![T::INFINITY; 2 * d];
    b[d..].iter_mut().for_each(|x| *x = -T::INFINITY);
    let (lo, hi) = b.split_at_mut(d);
    for &i in idx {
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row(ctx, i)) {
            if x < *l {
                *l = x;
            }
            if x > *h {
                *h = x;
            }
        }
    }
    let p = ctx.p;
    let mut rad = 0.0f64;
    for (&l, &h) in lo.iter().zip(hi.iter()) {
        let half = 0.5 * (h - l).to_f64();
        if p.is_infinite() {
            rad = rad.max(half);
        } else {
            rad += half.abs().powf(p);
        }
    }
    (b, rad.powf(1.0 / p))
}

/// Ball node: the (weighted) centroid of its points and the largest distance from it.
fn init_ball<T: Float, M: Ops<T>>(ctx: &Ctx<T, M>, idx: &[i64]) -> (Vec<T>, f64) {
    let d = ctx.d;
    let mut c = vec![T::ZERO; d];
    match ctx.weights {
        Some(w) => {
            let mut total = 0.0f64;
            for &i in idx {
                let wi = w[i as usize];
                total += wi.to_f64();
                for (cj, &x) in c.iter_mut().zip(row(ctx, i)) {
                    *cj += x * wi;
                }
            }
            c.iter_mut()
                .for_each(|cj| *cj = T::from_f64(cj.to_f64() / total));
        }
        None => {
            for &i in idx {
                for (cj, &x) in c.iter_mut().zip(row(ctx, i)) {
                    *cj += x;
                }
            }
            let n = T::from_usize(idx.len());
            c.iter_mut().for_each(|cj| *cj = *cj / n);
        }
    }
    let mut r = T::ZERO;
    for &i in idx {
        r = r.max(ctx.m.rdist(&c, row(ctx, i)));
    }
    (c, ctx.m.rdist_to_dist(r).to_f64())
}

/// Per-dimension minimum and maximum of a node's points.
fn extent<T: Float, M>(ctx: &Ctx<T, M>, idx: &[i64]) -> (Vec<T>, Vec<T>) {
    let first = row(ctx, idx[0]);
    let (mut lo, mut hi) = (first.to_vec(), first.to_vec());
    for &i in &idx[1..] {
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(row(ctx, i)) {
            if x < *l {
                *l = x;
            }
            if x > *h {
                *h = x;
            }
        }
    }
    (lo, hi)
}

/// First dimension of largest spread (0 when every spread is 0), spreads taken in float64.
fn widest<T: Float>(lo: &[T], hi: &[T]) -> usize {
    let mut best = 0;
    let mut best_spread = 0.0f64;
    for (j, (&l, &h)) in lo.iter().zip(hi).enumerate() {
        let spread = h.to_f64() - l.to_f64();
        if spread > best_spread {
            best_spread = spread;
            best = j;
        }
    }
    best
}

/// Puts the `mid` smallest points (by (value on `dim`, row number)) first, as scikit-learn's
/// `partition_node_indices` does.
fn partition<T: Float, M>(ctx: &Ctx<T, M>, idx: &mut [i64], dim: usize, mid: usize) {
    let mut keyed: Vec<(T, i64)> = idx
        .iter()
        .map(|&i| (ctx.data[i as usize * ctx.d + dim], i))
        .collect();
    nth_element(&mut keyed, mid, &|a: &(T, i64), b: &(T, i64)| {
        if a.0 == b.0 {
            a.1 < b.1
        } else {
            a.0 < b.0
        }
    });
    for (slot, (_, i)) in idx.iter_mut().zip(keyed) {
        *slot = i;
    }
}
