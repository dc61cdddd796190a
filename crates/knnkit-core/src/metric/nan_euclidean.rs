//! scikit-learn's `nan_euclidean` distance by its direct formula: for rows `x` and `y`,
//! `sqrt(d / c · Σ (xᵢ − yᵢ)²)` over the `c` coordinates present in both (`d` features; NaN
//! when none is). Accumulated in float64 in feature order, so the values are those of the
//! same sum written one feature at a time in numpy (exact zeros for equal rows, no
//! cancellation for close ones, unlike the expanded form).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::pool;

/// Distances between every row of `x` (present where `missing_x` is false) and every row of
/// `y`, both row-major with `d` columns: a row-major `(rows of x) × (rows of y)` matrix.
/// Values at missing places are ignored whatever they are.
pub fn nan_euclidean(
    x: &[f64],
    missing_x: &[bool],
    y: &[f64],
    missing_y: &[bool],
    d: usize,
    threads: usize,
) -> Result<Vec<f64>> {
    if d == 0 {
        return Err(Error::param("features", "at least one", 0));
    }
    for (name, values, mask) in [("x", x, missing_x), ("y", y, missing_y)] {
        if !values.len().is_multiple_of(d) || mask.len() != values.len() {
            return Err(Error::Shape {
                name,
                expected: values.len() - values.len() % d,
                got: mask.len(),
            });
        }
    }
    let ny = y.len() / d;
    let mut out = vec![0.0f64; (x.len() / d) * ny];
    if ny == 0 {
        return Ok(out);
    }
    // `y` feature by feature (missing places hold 0.0, never read as values), so that each
    // row of `x` updates a block of sums lane by lane: every sum still adds its features in
    // order, one at a time, as the scalar formula does.
    let mut yt = vec![0.0f64; y.len()];
    let mut present = vec![false; y.len()];
    for j in 0..ny {
        for f in 0..d {
            if !missing_y[j * d + f] {
                yt[f * ny + j] = y[j * d + f];
                present[f * ny + j] = true;
            }
        }
    }
    let features = d as f64;
    pool::install(threads, || {
        out.par_chunks_mut(ny).enumerate().for_each(|(i, row)| {
            let (xi, mi) = (&x[i * d..(i + 1) * d], &missing_x[i * d..(i + 1) * d]);
            let mut common = [0u32; BLOCK];
            for j0 in (0..ny).step_by(BLOCK) {
                let n = BLOCK.min(ny - j0);
                let (sums, common) = (&mut row[j0..j0 + n], &mut common[..n]);
                common.fill(0);
                for f in (0..d).filter(|&f| !mi[f]) {
                    let v = xi[f];
                    let (col, has) = (&yt[f * ny + j0..][..n], &present[f * ny + j0..][..n]);
                    for (((s, c), &y), &h) in
                        sums.iter_mut().zip(common.iter_mut()).zip(col).zip(has)
                    {
                        let t = v - y;
                        *s += if h { t * t } else { 0.0 };
                        *c += u32::from(h);
                    }
                }
                for (s, &c) in sums.iter_mut().zip(common.iter()) {
                    *s = if c == 0 {
                        f64::NAN
                    } else {
                        (*s / f64::from(c) * features).sqrt()
                    };
                }
            }
        });
    });
    Ok(out)
}

/// Rows of `y` whose sums one row of `x` updates at a time (they stay in the L1 cache).
const BLOCK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_formula_and_ignores_missing_values() {
        let nan = f64::NAN;
        let x = [0.0, nan, 3.0, 4.0];
        let mx = [false, true, false, false];
        let d = nan_euclidean(&x, &mx, &x, &mx, 2, 2).unwrap();
        let far = (2.0f64 / 1.0 * 9.0).sqrt();
        assert_eq!(d, vec![0.0, far, far, 0.0]);
        // Nothing in common: NaN; a value behind the mask never counts.
        let y = [7.0, 1e300];
        let d = nan_euclidean(&[1.0, 2.0], &[false, true], &y, &[true, false], 2, 1).unwrap();
        assert!(d[0].is_nan());
        assert!(nan_euclidean(&x, &mx[..3], &x, &mx, 2, 1).is_err());
        assert!(nan_euclidean(&x, &mx, &x, &mx, 0, 1).is_err());
    }

    #[test]
    fn blocks_give_the_sum_in_feature_order() {
        // More rows than a block, missing places holding NaN and huge values.
        let mut rng = crate::rng::SplitMix64::new(9);
        let (nx, ny, d) = (7, 2 * BLOCK + 13, 5);
        let mut draw = |n: usize| -> (Vec<f64>, Vec<bool>) {
            let m: Vec<bool> = (0..n).map(|_| rng.next_u64().is_multiple_of(3)).collect();
            let v = (0..n)
                .map(|i| {
                    if m[i] && i % 2 == 0 {
                        f64::NAN
                    } else if m[i] {
                        1e300
                    } else {
                        (rng.next_u64() % 1000) as f64 / 7.0
                    }
                })
                .collect();
            (v, m)
        };
        let (x, mx) = draw(nx * d);
        let (y, my) = draw(ny * d);
        let got = nan_euclidean(&x, &mx, &y, &my, d, 2).unwrap();
        for i in 0..nx {
            for j in 0..ny {
                let (mut sum, mut c) = (0.0f64, 0.0f64);
                for f in 0..d {
                    let both = !mx[i * d + f] && !my[j * d + f];
                    let t = if both {
                        x[i * d + f] - y[j * d + f]
                    } else {
                        0.0
                    };
                    sum += t * t;
                    c += f64::from(u8::from(both));
                }
                let want = if c == 0.0 {
                    f64::NAN
                } else {
                    (sum / c * d as f64).sqrt()
                };
                let g = got[i * ny + j];
                assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()));
            }
        }
    }
}
