//! `nth_element` as libstdc++ implements it (introselect: median-of-three quickselect, heap
//! select past a depth limit, insertion sort on the last ≤ 3 elements), replayed step for step.
//!
//! scikit-learn partitions tree nodes with `std::nth_element`; doing the same swaps in the same
//! order gives the same `idx_array`, hence the same leaves in the same order and the same ball
//! centroids, bit for bit. Any strict total order works (the trees use (value, row number), so
//! elements never compare equal); the unguarded scans rely on it, and indexing stays checked.

/// Reorders `v` so that `v[nth]` is the element a full sort would put there, every element
/// before it is not greater and every element after it is not less (under `less`).
pub fn nth_element<E: Copy>(v: &mut [E], nth: usize, less: &impl Fn(&E, &E) -> bool) {
    let n = v.len();
    if n == 0 || nth >= n {
        return;
    }
    let depth = 2 * lg(n);
    introselect(v, 0, nth, n, depth, less);
}

/// floor(log2(n)), n ≥ 1.
fn lg(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

fn introselect<E: Copy>(
    v: &mut [E],
    mut first: usize,
    nth: usize,
    mut last: usize,
    mut depth: usize,
    less: &impl Fn(&E, &E) -> bool,
) {
    while last - first > 3 {
        if depth == 0 {
            heap_select(v, first, nth + 1, last, less);
            v.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last, less);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(v, first, last, less);
}

fn unguarded_partition_pivot<E: Copy>(
    v: &mut [E],
    first: usize,
    last: usize,
    less: &impl Fn(&E, &E) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, less);
    unguarded_partition(v, first + 1, last, first, less)
}

fn move_median_to_first<E: Copy>(
    v: &mut [E],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    less: &impl Fn(&E, &E) -> bool,
) {
    let (va, vb, vc) = (&v[a], &v[b], &v[c]);
    let pick = if less(va, vb) {
        if less(vb, vc) {
            b
        } else if less(va, vc) {
            c
        } else {
            a
        }
    } else if less(va, vc) {
        a
    } else if less(vb, vc) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn unguarded_partition<E: Copy>(
    v: &mut [E],
    mut first: usize,
    mut last: usize,
    pivot: usize,
    less: &impl Fn(&E, &E) -> bool,
) -> usize {
    let p = v[pivot];
    loop {
        while less(&v[first], &p) {
            first += 1;
        }
        last -= 1;
        while less(&p, &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn insertion_sort<E: Copy>(v: &mut [E], first: usize, last: usize, less: &impl Fn(&E, &E) -> bool) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        let val = v[i];
        if less(&val, &v[first]) {
            v.copy_within(first..i, first + 1);
            v[first] = val;
        } else {
            let mut j = i;
            while less(&val, &v[j - 1]) {
                v[j] = v[j - 1];
                j -= 1;
            }
            v[j] = val;
        }
    }
}

fn heap_select<E: Copy>(
    v: &mut [E],
    first: usize,
    middle: usize,
    last: usize,
    less: &impl Fn(&E, &E) -> bool,
) {
    make_heap(v, first, middle, less);
    for i in middle..last {
        if less(&v[i], &v[first]) {
            // pop_heap(first, middle, i)
            let value = v[i];
            v[i] = v[first];
            adjust_heap(v, first, 0, middle - first, value, less);
        }
    }
}

fn make_heap<E: Copy>(v: &mut [E], first: usize, last: usize, less: &impl Fn(&E, &E) -> bool) {
    let len = last - first;
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = v[first + parent];
        adjust_heap(v, first, parent, len, value, less);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

fn adjust_heap<E: Copy>(
    v: &mut [E],
    first: usize,
    mut hole: usize,
    len: usize,
    value: E,
    less: &impl Fn(&E, &E) -> bool,
) {
    let top = hole;
    let mut second = hole;
    while second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if less(&v[first + second], &v[first + second - 1]) {
            second -= 1;
        }
        v[first + hole] = v[first + second];
        hole = second;
    }
    if len & 1 == 0 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        v[first + hole] = v[first + second - 1];
        hole = second - 1;
    }
    // push_heap(first, hole, top, value)
    while hole > top {
        let parent = (hole - 1) / 2;
        if !less(&v[first + parent], &value) {
            break;
        }
        v[first + hole] = v[first + parent];
        hole = parent;
    }
    v[first + hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partitions_like_a_sort(mut v in prop::collection::vec(0u32..50, 1..300), nth in 0usize..300) {
            // Make the order strict: (value, position).
            let mut v: Vec<(u32, usize)> = v.drain(..).enumerate().map(|(i, x)| (x, i)).collect();
            let nth = nth % v.len();
            let mut sorted = v.clone();
            sorted.sort();
            nth_element(&mut v, nth, &|a, b| a < b);
            prop_assert_eq!(v[nth], sorted[nth]);
            prop_assert!(v[..nth].iter().all(|x| *x < v[nth]));
            prop_assert!(v[nth + 1..].iter().all(|x| *x > v[nth]));
        }

        #[test]
        fn heap_select_path_partitions(mut v in prop::collection::vec(0u32..50, 4..200), nth in 0usize..200) {
            let mut v: Vec<(u32, usize)> = v.drain(..).enumerate().map(|(i, x)| (x, i)).collect();
            let nth = nth % v.len();
            let mut sorted = v.clone();
            sorted.sort();
            let n = v.len();
            introselect(&mut v, 0, nth, n, 0, &|a, b| a < b);
            prop_assert_eq!(v[nth], sorted[nth]);
            prop_assert!(v[..nth].iter().all(|x| *x < v[nth]));
            prop_assert!(v[nth + 1..].iter().all(|x| *x > v[nth]));
        }
    }
}
