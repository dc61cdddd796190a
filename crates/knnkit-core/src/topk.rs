//! Bounded top-k selection: a max-heap of the k best (key, index) pairs seen so far.
//!
//! Order is lexicographic on (key, index), so ties go to the lower index — the same answer
//! whatever order candidates arrive in (parallel splits included). `threshold` is the current
//! k-th key: callers reject most candidates with one compare before touching the heap.

use crate::float::Float;
use std::cmp::Ordering;

/// A candidate neighbour: ranking key and row index.
pub type Candidate<T> = (T, usize);

#[inline(always)]
fn worse<T: Float>(a: &Candidate<T>, b: &Candidate<T>) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

/// The k best candidates seen so far.
#[derive(Clone, Debug)]
pub struct TopK<T> {
    k: usize,
    heap: Vec<Candidate<T>>,
}

impl<T: Float> TopK<T> {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    /// Key a candidate must beat (or tie with a lower index) to enter; +inf until k are held.
    #[inline(always)]
    pub fn threshold(&self) -> T {
        if self.heap.len() < self.k {
            T::INFINITY
        } else {
            self.heap[0].0
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers a candidate; keeps it if it is among the k best.
    #[inline]
    pub fn push(&mut self, key: T, index: usize) {
        let c = (key, index);
        if self.heap.len() < self.k {
            self.heap.push(c);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 && worse(&self.heap[0], &c) {
            self.heap[0] = c;
            self.sift_down(0);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if worse(&self.heap[i], &self.heap[parent]) {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut top = i;
            if l < n && worse(&self.heap[l], &self.heap[top]) {
                top = l;
            }
            if r < n && worse(&self.heap[r], &self.heap[top]) {
                top = r;
            }
            if top == i {
                break;
            }
            self.heap.swap(i, top);
            i = top;
        }
    }

    /// The held candidates, best first.
    pub fn into_sorted(self) -> Vec<Candidate<T>> {
        let mut v = self.heap;
        sort_candidates(&mut v);
        v
    }
}

/// The order of keys: a total order even with NaN (after every number), in which −0 and +0
/// are equal (unlike `total_cmp`), so ties between zeros still fall to the index. A comparison
/// that is not total makes the standard sorts panic.
#[inline(always)]
pub fn cmp_keys<T: Float>(a: T, b: T) -> Ordering {
    match a.partial_cmp(&b) {
        Some(o) => o,
        None => cmp_nan(a, b),
    }
}

/// [`cmp_keys`] when one key is NaN (out of line: the sorts' hot path stays one compare).
#[cold]
#[inline(never)]
fn cmp_nan<T: Float>(a: T, b: T) -> Ordering {
    #[allow(clippy::eq_op)] // x != x: NaN
    let (na, nb) = (a != a, b != b);
    na.cmp(&nb)
}

/// Candidates in order: key ([`cmp_keys`]), then index.
#[inline(always)]
pub fn cmp_candidates<T: Float>(a: &Candidate<T>, b: &Candidate<T>) -> Ordering {
    cmp_keys(a.0, b.0).then(a.1.cmp(&b.1))
}

/// Sorts candidates best first (key, then index; NaN keys last).
pub fn sort_candidates<T: Float>(v: &mut [Candidate<T>]) {
    v.sort_unstable_by(cmp_candidates);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nan_keys_sort_last_without_panicking() {
        let mut v: Vec<(f32, usize)> = (0..200)
            .map(|i| (if i % 3 == 0 { f32::NAN } else { (i % 7) as f32 }, i))
            .collect();
        sort_candidates(&mut v);
        assert!(v[..133].iter().all(|c| !c.0.is_nan()));
        assert!(v[133..].iter().all(|c| c.0.is_nan()));
    }

    #[test]
    fn zeros_tie_by_index_and_nan_of_either_sign_sorts_last() {
        let mut v = vec![
            (0.0f64, 3),
            (-f64::NAN, 0),
            (-0.0, 4),
            (f64::NAN, 1),
            (-1.0, 5),
        ];
        sort_candidates(&mut v);
        let order: Vec<usize> = v.iter().map(|c| c.1).collect();
        assert_eq!(order, vec![5, 3, 4, 0, 1]);
    }

    proptest! {
        #[test]
        fn keeps_the_k_smallest(keys in prop::collection::vec(0u8..20, 0..200), k in 0usize..30) {
            let mut t = TopK::<f64>::new(k);
            for (i, &key) in keys.iter().enumerate() {
                t.push(key as f64, i);
            }
            let mut all: Vec<(f64, usize)> = keys.iter().enumerate().map(|(i, &x)| (x as f64, i)).collect();
            sort_candidates(&mut all);
            all.truncate(k);
            prop_assert_eq!(t.into_sorted(), all);
        }
    }
}
