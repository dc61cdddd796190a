//! Kernel density estimates and two-point correlation on a tree.
//!
//! KDE follows scikit-learn's algorithm: every node has lower and upper bounds on its
//! contribution (its weight times the kernel at its farthest and nearest possible distance);
//! the global bounds are the sums, kept in log space. Nodes are refined (depth-first, or
//! breadth-first by distance) until the spread of the bounds is within `atol + rtol · estimate`,
//! and the estimate is the lower bound plus half the spread. All of it in float64.
//!
//! Two-point correlation counts, for each radius `r[i]` (sorted), the (query, point) pairs at
//! distance ≤ `r[i]`; a node entirely within a radius is counted whole.

use crate::error::{Error, Result};
use crate::flat::SearchParams;
use crate::float::Float;

use super::query::subtree_roots;
use super::{run_chunks, with_bounds, with_ops, Bounds, Ops, Stats, Tree, TreeView};

/// The kernels of scikit-learn's `kernel_density`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    Gaussian,
    Tophat,
    Epanechnikov,
    Exponential,
    Linear,
    Cosine,
}

impl KernelKind {
    pub const NAMES: &'static [&'static str] = &[
        "gaussian",
        "tophat",
        "epanechnikov",
        "exponential",
        "linear",
        "cosine",
    ];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gaussian" => KernelKind::Gaussian,
            "tophat" => KernelKind::Tophat,
            "epanechnikov" => KernelKind::Epanechnikov,
            "exponential" => KernelKind::Exponential,
            "linear" => KernelKind::Linear,
            "cosine" => KernelKind::Cosine,
            other => {
                return Err(Error::param(
                    "kernel",
                    format!("one of {}", Self::NAMES.join(", ")),
                    other,
                ))
            }
        })
    }

    /// log K(dist; h), unnormalised (K(0) = 1).
    #[inline]
    pub fn log_kernel(self, dist: f64, h: f64) -> f64 {
        match self {
            KernelKind::Gaussian => -0.5 * (dist * dist) / (h * h),
            KernelKind::Tophat => {
                if dist < h {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            }
            KernelKind::Epanechnikov => {
                if dist < h {
                    (1.0 - (dist * dist) / (h * h)).ln()
                } else {
                    f64::NEG_INFINITY
                }
            }
            KernelKind::Exponential => -dist / h,
            KernelKind::Linear => {
                if dist < h {
                    (1.0 - dist / h).ln()
                } else {
                    f64::NEG_INFINITY
                }
            }
            KernelKind::Cosine => {
                if dist < h {
                    (0.5 * std::f64::consts::PI * dist / h).cos().ln()
                } else {
                    f64::NEG_INFINITY
                }
            }
        }
    }

    /// Log of the normalisation that makes the kernel integrate to 1 in `d` dimensions.
    pub fn log_norm(self, h: f64, d: usize) -> f64 {
        use std::f64::consts::PI;
        let df = d as f64;
        let log_vn = |n: f64| 0.5 * n * PI.ln() - lgamma(0.5 * n + 1.0);
        let log_sn = |n: f64| (2.0 * PI).ln() + log_vn(n - 1.0);
        let factor = match self {
            KernelKind::Gaussian => 0.5 * df * (2.0 * PI).ln(),
            KernelKind::Tophat => log_vn(df),
            KernelKind::Epanechnikov => log_vn(df) + (2.0 / (df + 2.0)).ln(),
            KernelKind::Exponential => log_sn(df - 1.0) + lgamma(df),
            KernelKind::Linear => log_vn(df) - (df + 1.0).ln(),
            KernelKind::Cosine => {
                let mut factor = 0.0;
                let mut tmp = 2.0 / PI;
                let mut k = 1;
                while k <= d {
                    factor += tmp;
                    let (a, b) = ((d - k) as f64, (d as f64) - (k as f64) - 1.0);
                    tmp *= -a * b * (2.0 / PI) * (2.0 / PI);
                    k += 2;
                }
                factor.ln() + log_sn(df - 1.0)
            }
        };
        -factor - df * h.ln()
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-14 on the values used).
fn lgamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    use std::f64::consts::PI;
    if x < 0.5 {
        // Reflection.
        return (PI / (PI * x).sin()).ln() - lgamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, &g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[inline]
fn logaddexp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else {
        m + ((a - m).exp() + (b - m).exp()).ln()
    }
}

#[inline]
fn logsubexp(a: f64, b: f64) -> f64 {
    if a <= b {
        f64::NEG_INFINITY
    } else {
        a + (-(b - a).exp()).ln_1p()
    }
}

/// Parameters of one KDE call, shared by every query row.
struct Kde {
    kernel: KernelKind,
    h: f64,
    log_knorm: f64,
    log_atol: f64,
    log_rtol: f64,
    /// Node weights (point counts without sample weights).
    node_weight: Vec<f64>,
    /// log of each point's weight (tree order), or none.
    log_w: Option<Vec<f64>>,
    total: f64,
}

impl Kde {
    /// True when a spread is small enough: knorm·spread ≤ atol + rtol·knorm·min.
    #[inline]
    fn within(&self, log_spread: f64, log_min: f64) -> bool {
        self.log_knorm + log_spread
            <= logaddexp(self.log_atol, self.log_rtol + self.log_knorm + log_min)
    }

    #[inline]
    fn k(&self, dist: f64) -> f64 {
        self.kernel.log_kernel(dist, self.h)
    }
}

impl<'a, T: Float> TreeView<'a, T> {
    /// Log of the kernel density estimate at each query row (normalised, and divided by neither
    /// n nor the total weight, as scikit-learn returns it), within `atol + rtol · estimate`.
    #[allow(clippy::too_many_arguments)]
    pub fn kernel_density(
        &self,
        queries: &[T],
        h: f64,
        kernel: KernelKind,
        atol: f64,
        rtol: f64,
        breadth_first: bool,
        params: &SearchParams,
    ) -> Result<(Vec<f64>, Stats)> {
        let nq = self.check_queries(queries)?;
        if !(h > 0.0 && h.is_finite()) {
            return Err(Error::param("h", "a positive bandwidth", h));
        }
        if atol.is_nan() || atol < 0.0 {
            return Err(Error::param("atol", "atol >= 0", atol));
        }
        if rtol.is_nan() || rtol < 0.0 {
            return Err(Error::param("rtol", "rtol >= 0", rtol));
        }
        let node_weight: Vec<f64>;
        let mut log_w = None;
        let total;
        match self.weights {
            Some(w) => {
                let mut prefix = Vec::with_capacity(self.n + 1);
                let mut s = 0.0f64;
                prefix.push(0.0);
                for &x in w {
                    s += x.to_f64();
                    prefix.push(s);
                }
                node_weight = self
                    .nodes
                    .iter()
                    .map(|nd| prefix[nd.idx_end] - prefix[nd.idx_start])
                    .collect();
                total = s;
                log_w = Some(w.iter().map(|x| x.to_f64().ln()).collect());
            }
            None => {
                node_weight = self.nodes.iter().map(|nd| nd.len() as f64).collect();
                total = self.n as f64;
            }
        }
        let kde = Kde {
            kernel,
            h,
            log_knorm: kernel.log_norm(h, self.d),
            log_atol: atol.ln(),
            log_rtol: rtol.ln(),
            node_weight,
            log_w,
            total,
        };
        let parts = run_chunks(nq, params, |range| {
            with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                let mut st = Stats::default();
                let mut node_min = vec![0.0f64; if breadth_first { self.n_nodes() } else { 0 }];
                let mut node_spread = node_min.clone();
                let mut queue = std::collections::BinaryHeap::new();
                let out: Vec<f64> = range
                    .map(|qi| {
                        let q = &queries[qi * self.d..(qi + 1) * self.d];
                        let v = if breadth_first {
                            self.kde_bf::<B, _>(
                                &m,
                                &kde,
                                q,
                                &mut node_min,
                                &mut node_spread,
                                &mut queue,
                                &mut st,
                            )
                        } else {
                            let (lo, hi) = B::min_max_dist(self, &m, 0, q);
                            st.n_calls += <B as Bounds<T>>::CALLS;
                            let ln_n = kde.total.ln();
                            let mut gmin = ln_n + kde.k(hi.to_f64());
                            let mut gspread = logsubexp(ln_n + kde.k(lo.to_f64()), gmin);
                            let (lmin, lspread) = (gmin, gspread);
                            self.kde_df::<B, _>(
                                &m,
                                &kde,
                                0,
                                q,
                                lmin,
                                lspread,
                                &mut gmin,
                                &mut gspread,
                                &mut st,
                            );
                            logaddexp(gmin, gspread - std::f64::consts::LN_2)
                        };
                        v + kde.log_knorm
                    })
                    .collect();
                (out, st)
            }))
        })?;
        let mut out = Vec::with_capacity(nq);
        let mut stats = Stats::default();
        for (v, st) in parts {
            out.extend(v);
            stats = stats.add(st);
        }
        Ok((out, stats))
    }

    /// Adds a leaf's exact contributions to `gmin`.
    #[inline]
    fn kde_leaf<M: Ops<T>>(&self, m: &M, kde: &Kde, node: usize, q: &[T], gmin: &mut f64) -> u64 {
        let nd = self.nodes[node];
        self.for_each_rdist(m, q, nd.range(), |p, r| {
            let mut v = kde.k(m.rdist_to_dist(r).to_f64());
            if let Some(lw) = &kde.log_w {
                v += lw[p];
            }
            *gmin = logaddexp(*gmin, v);
        });
        nd.len() as u64
    }

    /// Log-space (min, spread) bounds of node `c`'s contribution.
    #[inline]
    fn kde_child<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        kde: &Kde,
        c: usize,
        q: &[T],
    ) -> (f64, f64, f64) {
        let (lo, hi) = B::min_max_dist(self, m, c, q);
        let ln_n = kde.node_weight[c].ln();
        let min = ln_n + kde.k(hi.to_f64());
        (min, logsubexp(ln_n + kde.k(lo.to_f64()), min), lo.to_f64())
    }

    #[allow(clippy::too_many_arguments)]
    fn kde_df<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        kde: &Kde,
        node: usize,
        q: &[T],
        local_min: f64,
        local_spread: f64,
        gmin: &mut f64,
        gspread: &mut f64,
        st: &mut Stats,
    ) {
        let n1 = kde.node_weight[node];
        if kde.within(local_spread - n1.ln() + kde.total.ln(), local_min)
            || kde.within(*gspread, *gmin)
        {
            st.n_trims += 1;
        } else if self.nodes[node].is_leaf {
            st.n_leaves += 1;
            *gmin = logsubexp(*gmin, local_min);
            *gspread = logsubexp(*gspread, local_spread);
            st.n_calls += self.kde_leaf(m, kde, node, q, gmin);
        } else {
            st.n_splits += 1;
            let (c1, c2) = (2 * node + 1, 2 * node + 2);
            let (min1, spread1, _) = self.kde_child::<B, M>(m, kde, c1, q);
            let (min2, spread2, _) = self.kde_child::<B, M>(m, kde, c2, q);
            st.n_calls += 2 * <B as Bounds<T>>::CALLS;
            *gmin = logaddexp(logaddexp(logsubexp(*gmin, local_min), min1), min2);
            *gspread = logaddexp(
                logaddexp(logsubexp(*gspread, local_spread), spread1),
                spread2,
            );
            self.kde_df::<B, M>(m, kde, c1, q, min1, spread1, gmin, gspread, st);
            self.kde_df::<B, M>(m, kde, c2, q, min2, spread2, gmin, gspread, st);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn kde_bf<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        kde: &Kde,
        q: &[T],
        node_min: &mut [f64],
        node_spread: &mut [f64],
        queue: &mut std::collections::BinaryHeap<Closest>,
        st: &mut Stats,
    ) -> f64 {
        queue.clear();
        let (mut gmin, mut gspread, lo) = self.kde_child::<B, M>(m, kde, 0, q);
        st.n_calls += <B as Bounds<T>>::CALLS;
        node_min[0] = gmin;
        node_spread[0] = gspread;
        queue.push(Closest { dist: lo, node: 0 });
        let ln_total = kde.total.ln();
        while let Some(Closest { node, .. }) = queue.pop() {
            let n1 = kde.node_weight[node];
            if kde.within(node_spread[node] - n1.ln() + ln_total, node_min[node]) {
                st.n_trims += 1;
            } else if kde.within(gspread, gmin) {
                break;
            } else if self.nodes[node].is_leaf {
                st.n_leaves += 1;
                gmin = logsubexp(gmin, node_min[node]);
                gspread = logsubexp(gspread, node_spread[node]);
                st.n_calls += self.kde_leaf(m, kde, node, q, &mut gmin);
            } else {
                st.n_splits += 1;
                gmin = logsubexp(gmin, node_min[node]);
                gspread = logsubexp(gspread, node_spread[node]);
                for c in [2 * node + 1, 2 * node + 2] {
                    let (min, spread, lo) = self.kde_child::<B, M>(m, kde, c, q);
                    st.n_calls += <B as Bounds<T>>::CALLS;
                    node_min[c] = min;
                    node_spread[c] = spread;
                    gmin = logaddexp(gmin, min);
                    gspread = logaddexp(gspread, spread);
                    queue.push(Closest { dist: lo, node: c });
                }
            }
        }
        logaddexp(gmin, gspread - std::f64::consts::LN_2)
    }

    /// Two-point correlation: for each radius of `r` (ascending), the number of (query row,
    /// tree point) pairs at distance ≤ that radius.
    pub fn two_point_correlation(
        &self,
        queries: &[T],
        r: &[f64],
        dualtree: bool,
        params: &SearchParams,
    ) -> Result<(Vec<i64>, Stats)> {
        let nq = self.check_queries(queries)?;
        if r.iter().any(|x| x.is_nan()) || r.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::param(
                "r",
                "ascending radii",
                "radii out of order or NaN",
            ));
        }
        let nr = r.len();
        let sum = |parts: Vec<(Vec<i64>, Stats)>| {
            let mut counts = vec![0i64; nr];
            let mut stats = Stats::default();
            for (c, st) in parts {
                counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                stats = stats.add(st);
            }
            (counts, stats)
        };
        if nr == 0 || nq == 0 {
            return Ok((vec![0; nr], Stats::default()));
        }
        if dualtree {
            let qtree = Tree::build(
                queries,
                self.d,
                self.kind,
                self.metric,
                self.leaf_size,
                None,
                params.threads,
            )?;
            let other = qtree.view();
            let roots = subtree_roots(&other, params.threads);
            let parts = run_chunks(roots.len(), params, |range| {
                with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                    let mut counts = vec![0i64; nr];
                    let mut st = Stats::default();
                    for t in range {
                        self.two_point_dual::<B, _>(
                            &m,
                            0,
                            &other,
                            roots[t],
                            r,
                            &mut counts,
                            0,
                            nr,
                            &mut st,
                        );
                    }
                    (counts, st)
                }))
            })?;
            return Ok(sum(parts));
        }
        let parts = run_chunks(nq, params, |range| {
            with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                let mut counts = vec![0i64; nr];
                let mut st = Stats::default();
                for qi in range {
                    let q = &queries[qi * self.d..(qi + 1) * self.d];
                    self.two_point_single::<B, _>(&m, 0, q, r, &mut counts, 0, nr, &mut st);
                }
                (counts, st)
            }))
        })?;
        Ok(sum(parts))
    }

    /// Narrows the active radii `i_min..i_max` with a node's distance bounds, counting the node
    /// whole in every radius its upper bound is within. Returns the new range.
    #[inline]
    fn cut_radii(
        lo: f64,
        hi: f64,
        npts: i64,
        r: &[f64],
        counts: &mut [i64],
        mut i_min: usize,
        mut i_max: usize,
    ) -> (usize, usize) {
        while i_min < i_max && lo > r[i_min] {
            i_min += 1;
        }
        while i_max > i_min && hi <= r[i_max - 1] {
            counts[i_max - 1] += npts;
            i_max -= 1;
        }
        (i_min, i_max)
    }

    #[inline]
    fn count_pair(dist: f64, r: &[f64], counts: &mut [i64], i_min: usize, i_max: usize) {
        for j in (i_min..i_max).rev() {
            if dist <= r[j] {
                counts[j] += 1;
            } else {
                break;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn two_point_single<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        node: usize,
        q: &[T],
        r: &[f64],
        counts: &mut [i64],
        i_min: usize,
        i_max: usize,
        st: &mut Stats,
    ) {
        let nd = self.nodes[node];
        let (lo, hi) = B::min_max_dist(self, m, node, q);
        st.n_calls += <B as Bounds<T>>::CALLS;
        let (i_min, i_max) = Self::cut_radii(
            lo.to_f64(),
            hi.to_f64(),
            nd.len() as i64,
            r,
            counts,
            i_min,
            i_max,
        );
        if i_min >= i_max {
            return;
        }
        if nd.is_leaf {
            self.for_each_rdist(m, q, nd.range(), |_, rd| {
                Self::count_pair(m.rdist_to_dist(rd).to_f64(), r, counts, i_min, i_max);
            });
            st.n_calls += nd.len() as u64;
        } else {
            for c in [2 * node + 1, 2 * node + 2] {
                self.two_point_single::<B, M>(m, c, q, r, counts, i_min, i_max, st);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn two_point_dual<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        n1: usize,
        other: &TreeView<T>,
        n2: usize,
        r: &[f64],
        counts: &mut [i64],
        i_min: usize,
        i_max: usize,
        st: &mut Stats,
    ) {
        let (nd1, nd2) = (self.nodes[n1], other.nodes[n2]);
        let (lo, hi) = B::min_max_dist_dual(self, n1, other, n2, m);
        st.n_calls += <B as Bounds<T>>::CALLS;
        let npts = (nd1.len() * nd2.len()) as i64;
        let (i_min, i_max) =
            Self::cut_radii(lo.to_f64(), hi.to_f64(), npts, r, counts, i_min, i_max);
        if i_min >= i_max {
            return;
        }
        match (nd1.is_leaf, nd2.is_leaf) {
            (true, true) => {
                let mut q = Vec::with_capacity(self.d);
                for p2 in nd2.range() {
                    other.gather(p2, &mut q);
                    self.for_each_rdist(m, &q, nd1.range(), |_, rd| {
                        Self::count_pair(m.rdist_to_dist(rd).to_f64(), r, counts, i_min, i_max);
                    });
                }
                st.n_calls += npts as u64;
            }
            (true, false) => {
                for c in [2 * n2 + 1, 2 * n2 + 2] {
                    self.two_point_dual::<B, M>(m, n1, other, c, r, counts, i_min, i_max, st);
                }
            }
            (false, true) => {
                for c in [2 * n1 + 1, 2 * n1 + 2] {
                    self.two_point_dual::<B, M>(m, c, other, n2, r, counts, i_min, i_max, st);
                }
            }
            (false, false) => {
                for c1 in [2 * n1 + 1, 2 * n1 + 2] {
                    for c2 in [2 * n2 + 1, 2 * n2 + 2] {
                        self.two_point_dual::<B, M>(m, c1, other, c2, r, counts, i_min, i_max, st);
                    }
                }
            }
        }
    }
}

/// A node in the breadth-first KDE queue: nearest first.
#[derive(Clone, Copy)]
pub(super) struct Closest {
    dist: f64,
    node: usize,
}

impl PartialEq for Closest {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Closest {}
impl PartialOrd for Closest {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Closest {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.dist.total_cmp(&self.dist).then(o.node.cmp(&self.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lgamma_matches_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(5) = 24, Γ(1/2) = √π
        assert!(lgamma(1.0).abs() < 1e-13);
        assert!(lgamma(2.0).abs() < 1e-13);
        assert!((lgamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((lgamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((lgamma(10.5) - 1_133_278.388_948_441_6f64.ln()).abs() < 1e-11);
    }

    #[test]
    fn kernels_integrate_to_one_in_one_dimension() {
        // ∫ exp(log_norm + log_kernel(|x|)) dx = 1 (midpoint rule).
        for kernel in KernelKind::NAMES
            .iter()
            .map(|k| KernelKind::parse(k).unwrap())
        {
            let h = 0.7;
            let norm = kernel.log_norm(h, 1);
            let (a, steps) = (20.0, 400_000);
            let dx = 2.0 * a / steps as f64;
            let total: f64 = (0..steps)
                .map(|i| {
                    let x = -a + (i as f64 + 0.5) * dx;
                    (norm + kernel.log_kernel(x.abs(), h)).exp() * dx
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-4, "{kernel:?}: {total}");
        }
    }
}
