//! The in-memory mirror of a collection's records: for each key (the record's int64 id inside
//! the index), the record's str id and metadata. Queries map index hits back to str ids
//! through it and evaluate `where` filters on it without touching SQLite.
//!
//! [`Mirror`] is the interface the collection uses. Two implementations:
//!
//! - [`ColumnMirror`], the collection's: columnar, with inverted and sorted indexes, so a
//!   filter costs set operations over its postings instead of a visit of every record;
//! - [`RowMirror`], a hash map whose filters call [`Where::matches`] record by record
//!   (O(records) per filtered call). It is the executable definition of what a filter matches:
//!   the tests compare [`ColumnMirror`] against it on random records, changes and filters.
//!
//! ## The columnar layout
//!
//! Records are numbered by a dense *row* in arrival order (`row → key, id, metadata`, and
//! `key → row` in a hash map). A metadata update keeps the key and so the row: the row's old
//! values leave every structure and its new ones enter. A removed row stays as a hole until the
//! holes reach a quarter of the rows ([`COMPACT_SHARE`], at least [`COMPACT_MIN`] of them); then
//! every live row is renumbered in key order and the columns are rebuilt, so memory follows the
//! live records and, between compactions, ascending rows mean ascending keys when keys arrive in
//! increasing order (the store's do: they come from a counter and are never reused).
//!
//! For each metadata field, a column holds:
//!
//! - `present`: the rows that have the field, whatever its value (`$exists`);
//! - for scalar values, postings by value (the inverted index): bools by value, numbers in a
//!   `BTreeMap` ordered by value across int and float, strings in a `BTreeMap` in byte order.
//!   Equality and `$in` are one lookup per operand; a string range is one ordered range of the
//!   string map;
//! - for numeric scalar values, a sorted column: `(value, row)` entries in value order, in
//!   chunks of 256 to 511 (a flat B+-tree), for ranges: two binary searches, then a sequential
//!   scan of the entries in range, however many distinct values they hold;
//! - for list values, postings by item (`$contains`); a list holding an item twice is listed
//!   once.
//!
//! Numbers are keyed by a canonical form so that equal values share one posting exactly as
//! [`Scalar::equals`] decides: a float that is integral and within int64 range is keyed as
//! that int (`1.0` and `1`, `-0.0` and `0`), any other float as itself; the order between an
//! int and a float is [`Scalar::compare`]'s (exact, without rounding the int).
//!
//! A posting is a sorted `Vec<u32>` of rows while it is small, and a bitset over the rows once
//! it holds more than 1/32 of them (the bitset is then the smaller of the two), back to a list
//! below 1/64: equality on a rare value stays a few words, on a common value a bitset.
//!
//! ## Evaluation
//!
//! A filter tree is evaluated bottom-up into a bitset over the rows ([`Matches`]): a leaf is the
//! union of its postings (or of its sorted column's range), `$and`/`$or` intersect/unite their children word by word, and a
//! negation (`$ne`, `$nin`, `$not`) is the complement within the live rows, which is why it
//! also matches records without the field, as [`Where::matches`] does. The count of a match set
//! is a popcount, so the planner in the collection decides from the exact number of matches
//! rather than an estimate: at 100k records a result is 1,563 words, and evaluating a leaf
//! costs microseconds plus one bit per matching row of its postings.
//!
//! Why plain `Vec<u64>` bitsets and not a compressed-bitmap crate (`roaring`): every result is
//! materialised once per call at one bit per row (12.5 KB per 100k records, whatever the
//! selectivity), and postings already switch between a row list and a bitset by density, which
//! is what a compressed bitmap would add here; it would be a dependency for a few hundred lines
//! that are straightforward to test against [`RowMirror`].
//!
//! Cost: insert and remove O(fields · log values), plus moving part of one chunk of the sorted
//! column and, for a small posting, of its list (at most 1/32 of the rows); a batch of records
//! as large as a quarter of the mirror ([`Mirror::extend`]: opening a collection, a large
//! write) and a compaction build every column anew with one sort per field, O(records · fields
//! · log records); a filter costs O(rows / 64) per tree node plus the rows its postings
//! contribute.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::meta::{MetaValue, Metadata, Scalar};
use super::predicate::{FieldOp, Where};
use crate::ids::IdHashMap;

/// What a collection keeps in memory about each record, besides its vector.
pub trait Mirror: Send + Sync {
    /// Records `key`'s str id and metadata (replacing what `key` had).
    fn insert(&mut self, key: i64, id: String, meta: Option<Metadata>);
    /// Forgets `key` (unknown keys are ignored).
    fn remove(&mut self, key: i64);
    /// [`Mirror::insert`] of each record in turn (a mirror may index a large batch at once).
    fn extend(&mut self, records: Vec<(i64, String, Option<Metadata>)>) {
        for (key, id, meta) in records {
            self.insert(key, id, meta);
        }
    }
    /// Number of records.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The str id of `key`.
    fn id(&self, key: i64) -> Option<&str>;
    /// The metadata of `key` (`None` also when the record has none).
    fn metadata(&self, key: i64) -> Option<&Metadata>;
    /// True when `key` is a record.
    fn contains(&self, key: i64) -> bool;
    /// The keys of the records `filter` matches, in ascending order.
    fn matching(&self, filter: &Where) -> Vec<i64>;
    /// The records `filter` matches, as a set that counts, lists its keys and builds an index
    /// filter without more evaluation.
    fn select(&self, filter: &Where) -> Matches<'_> {
        Matches(Repr::Keys(self.matching(filter)))
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: one hash map, filters record by record.

struct Row {
    id: String,
    meta: Option<Metadata>,
}

/// A hash map from key to the record's id and metadata; filters evaluate [`Where::matches`] on
/// every record. The reference the columnar mirror is tested against.
#[derive(Default)]
pub struct RowMirror {
    rows: IdHashMap<Row>,
}

impl RowMirror {
    pub fn new() -> Self {
        RowMirror {
            rows: IdHashMap::default(),
        }
    }
}

impl Mirror for RowMirror {
    fn insert(&mut self, key: i64, id: String, meta: Option<Metadata>) {
        self.rows.insert(key, Row { id, meta });
    }
    fn remove(&mut self, key: i64) {
        self.rows.remove(&key);
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn id(&self, key: i64) -> Option<&str> {
        self.rows.get(&key).map(|r| r.id.as_str())
    }
    fn metadata(&self, key: i64) -> Option<&Metadata> {
        self.rows.get(&key).and_then(|r| r.meta.as_ref())
    }
    fn contains(&self, key: i64) -> bool {
        self.rows.contains_key(&key)
    }
    fn matching(&self, filter: &Where) -> Vec<i64> {
        let mut keys: Vec<i64> = self
            .rows
            .iter()
            .filter(|(_, r)| filter.matches(r.meta.as_ref()))
            .map(|(&k, _)| k)
            .collect();
        keys.sort_unstable();
        keys
    }
}

// ---------------------------------------------------------------------------------------------
// Match sets.

/// The records a filter matched (see [`Mirror::select`]).
pub struct Matches<'a>(Repr<'a>);

enum Repr<'a> {
    /// Ascending keys.
    Keys(Vec<i64>),
    /// A bitset over a [`ColumnMirror`]'s rows.
    Rows {
        rows: Bits,
        count: usize,
        keys: &'a [i64],
        /// Ascending rows hold ascending keys.
        sorted: bool,
        /// One past the largest key the mirror has held.
        key_end: Option<usize>,
    },
}

impl Matches<'_> {
    /// Number of matching records.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Keys(k) => k.len(),
            Repr::Rows { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The matching keys, ascending.
    pub fn keys(&self) -> Vec<i64> {
        match &self.0 {
            Repr::Keys(k) => k.clone(),
            Repr::Rows {
                rows,
                count,
                keys,
                sorted,
                ..
            } => {
                let mut out = Vec::with_capacity(*count);
                out.extend(rows.ones().map(|r| keys[r]));
                if !sorted {
                    out.sort_unstable();
                }
                out
            }
        }
    }

    /// A length for [`Matches::key_mask`]: above every matching key. `None` when a key is
    /// negative or beyond memory.
    pub fn key_bound(&self) -> Option<usize> {
        match &self.0 {
            Repr::Keys(k) => match (k.first(), k.last()) {
                (Some(&lo), Some(&hi)) if lo >= 0 => usize::try_from(hi).ok()?.checked_add(1),
                (Some(_), _) => None,
                _ => Some(0),
            },
            Repr::Rows { key_end, .. } => *key_end,
        }
    }

    /// A boolean per key, `len` long (at least [`Matches::key_bound`]): true for the matching
    /// keys, as [`crate::index::Filter::Mask`] takes it.
    pub fn key_mask(&self, len: usize) -> Vec<bool> {
        let mut mask = vec![false; len];
        let mut set = |k: i64| {
            if let Some(m) = usize::try_from(k).ok().and_then(|k| mask.get_mut(k)) {
                *m = true;
            }
        };
        match &self.0 {
            Repr::Keys(k) => k.iter().for_each(|&k| set(k)),
            Repr::Rows { rows, keys, .. } => rows.ones().for_each(|r| set(keys[r])),
        }
        mask
    }
}

// ---------------------------------------------------------------------------------------------
// Bitsets and postings.

/// A set of rows, one bit each; words past the end read as zero.
#[derive(Clone, Debug, Default, PartialEq)]
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// The empty set over `rows` rows.
    fn zeros(rows: usize) -> Self {
        Bits {
            words: vec![0; rows.div_ceil(64)],
        }
    }

    fn insert(&mut self, row: usize) -> bool {
        let w = row >> 6;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (row & 63);
        let was = self.words[w] & bit != 0;
        self.words[w] |= bit;
        !was
    }

    /// Adds `row`, which must be below the set's length in rows.
    #[inline]
    fn set(&mut self, row: usize) {
        self.words[row >> 6] |= 1u64 << (row & 63);
    }

    fn remove(&mut self, row: usize) -> bool {
        let Some(word) = self.words.get_mut(row >> 6) else {
            return false;
        };
        let bit = 1u64 << (row & 63);
        let was = *word & bit != 0;
        *word &= !bit;
        was
    }

    #[cfg(test)]
    fn contains(&self, row: usize) -> bool {
        self.words
            .get(row >> 6)
            .is_some_and(|w| (w >> (row & 63)) & 1 == 1)
    }

    fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    fn or_assign(&mut self, other: &Bits) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    fn and_assign(&mut self, other: &Bits) {
        let n = other.words.len().min(self.words.len());
        for (a, b) in self.words[..n].iter_mut().zip(&other.words) {
            *a &= b;
        }
        self.words[n..].iter_mut().for_each(|a| *a = 0);
    }

    /// `self − other`.
    fn andnot_assign(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// The rows in the set, ascending.
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + b
                })
            })
        })
    }

    /// Heap bytes held.
    fn memory(&self) -> usize {
        self.words.capacity() * 8
    }
}

/// The rows holding one value (or having one field): a sorted row list while small, a bitset
/// when dense (see the module comment).
#[derive(Clone, Debug)]
enum Posting {
    List(Vec<u32>),
    Bits(Bits, usize),
}

impl Default for Posting {
    fn default() -> Self {
        Posting::List(Vec::new())
    }
}

/// A list longer than this (for a mirror of `rows` rows) becomes a bitset. (Tests use smaller
/// sizes here and for chunks and batches, so that small random cases reach every branch.)
fn list_max(rows: usize) -> usize {
    (rows / 32).max(if cfg!(test) { 2 } else { 64 })
}

impl Posting {
    fn len(&self) -> usize {
        match self {
            Posting::List(l) => l.len(),
            Posting::Bits(_, n) => *n,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The posting of `list` (ascending, no repeats) in a mirror of `rows` rows.
    fn from_rows(list: Vec<u32>, rows: usize) -> Posting {
        if list.len() > list_max(rows) {
            let mut bits = Bits::zeros(rows);
            list.iter().for_each(|&r| bits.set(r as usize));
            let n = list.len();
            Posting::Bits(bits, n)
        } else {
            Posting::List(list)
        }
    }

    /// Adds `row` (a mirror of `rows` rows); false when it was there.
    fn insert(&mut self, row: usize, rows: usize) -> bool {
        match self {
            Posting::List(l) => {
                let r = row as u32;
                match l.last() {
                    Some(&last) if last >= r => match l.binary_search(&r) {
                        Ok(_) => return false,
                        Err(at) => l.insert(at, r),
                    },
                    _ => l.push(r),
                }
                if l.len() > list_max(rows) {
                    let mut bits = Bits::zeros(rows);
                    l.iter().for_each(|&r| {
                        bits.insert(r as usize);
                    });
                    *self = Posting::Bits(bits, l.len());
                }
                true
            }
            Posting::Bits(b, n) => {
                let added = b.insert(row);
                *n += usize::from(added);
                added
            }
        }
    }

    /// Drops `row` (a mirror of `rows` rows); false when it was not there.
    fn remove(&mut self, row: usize, rows: usize) -> bool {
        match self {
            Posting::List(l) => match l.binary_search(&(row as u32)) {
                Ok(at) => {
                    l.remove(at);
                    true
                }
                Err(_) => false,
            },
            Posting::Bits(b, n) => {
                if !b.remove(row) {
                    return false;
                }
                *n -= 1;
                if *n < rows / 64 {
                    *self = Posting::List(b.ones().map(|r| r as u32).collect());
                }
                true
            }
        }
    }

    /// `out ∪= self` (`out` spans every row of the mirror).
    fn or_into(&self, out: &mut Bits) {
        match self {
            Posting::List(l) => l.iter().for_each(|&r| out.set(r as usize)),
            Posting::Bits(b, _) => out.or_assign(b),
        }
    }

    fn memory(&self) -> usize {
        match self {
            Posting::List(l) => l.capacity() * 4,
            Posting::Bits(b, _) => b.memory(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values and columns.

/// A number keyed so that equal values are equal keys (see the module comment): `Float` holds
/// only finite floats that are not integral within int64 range.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i64),
    Float(f64),
}

/// 2^63 as a float: the floats in `[-2^63, 2^63)` that are integral are int64 values.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

impl Num {
    fn of(s: &Scalar) -> Option<Num> {
        match *s {
            Scalar::Int(i) => Some(Num::Int(i)),
            Scalar::Float(f) if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) => {
                Some(Num::Int(f as i64))
            }
            Scalar::Float(f) => Some(Num::Float(f)),
            _ => None,
        }
    }

    fn scalar(self) -> Scalar {
        match self {
            Num::Int(i) => Scalar::Int(i),
            Num::Float(f) => Scalar::Float(f),
        }
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(b),
            // Never equal (a canonical float is not an int64 value), and never NaN (metadata
            // and filters hold finite numbers only).
            _ => self
                .scalar()
                .compare(&other.scalar())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

/// The bounds of the values `v` with `v.compare(x)` equal to `side` (or equal, with
/// `or_equal`).
fn bounds<T>(side: Ordering, or_equal: bool, x: T) -> (Bound<T>, Bound<T>) {
    let at = if or_equal {
        Bound::Included(x)
    } else {
        Bound::Excluded(x)
    };
    match side {
        Ordering::Greater => (at, Bound::Unbounded),
        _ => (Bound::Unbounded, at),
    }
}

/// Postings by value, for one field's scalar values or for the items of its lists.
#[derive(Default)]
struct Values {
    bools: [Posting; 2],
    nums: BTreeMap<Num, Posting>,
    strs: BTreeMap<String, Posting>,
}

impl Values {
    fn get(&self, s: &Scalar) -> Option<&Posting> {
        match s {
            Scalar::Bool(b) => Some(&self.bools[usize::from(*b)]),
            Scalar::Str(x) => self.strs.get(x.as_str()),
            _ => self.nums.get(&Num::of(s)?),
        }
    }

    fn insert(&mut self, s: &Scalar, row: usize, rows: usize) {
        match s {
            Scalar::Bool(b) => {
                self.bools[usize::from(*b)].insert(row, rows);
            }
            // One lookup when the value is known (the usual case), two when it is new.
            Scalar::Str(x) => match self.strs.get_mut(x.as_str()) {
                Some(p) => {
                    p.insert(row, rows);
                }
                None => {
                    self.strs.insert(x.clone(), Posting::List(vec![row as u32]));
                }
            },
            _ => {
                if let Some(n) = Num::of(s) {
                    self.nums.entry(n).or_default().insert(row, rows);
                }
            }
        }
    }

    fn remove(&mut self, s: &Scalar, row: usize, rows: usize) {
        match s {
            Scalar::Bool(b) => {
                self.bools[usize::from(*b)].remove(row, rows);
            }
            Scalar::Str(x) => {
                if let Some(p) = self.strs.get_mut(x.as_str()) {
                    p.remove(row, rows);
                    if p.is_empty() {
                        self.strs.remove(x.as_str());
                    }
                }
            }
            _ => {
                if let Some(n) = Num::of(s) {
                    if let Some(p) = self.nums.get_mut(&n) {
                        p.remove(row, rows);
                        if p.is_empty() {
                            self.nums.remove(&n);
                        }
                    }
                }
            }
        }
    }

    /// The rows whose bool or str value `v` has `v.compare(x)` equal to `side` (or equal,
    /// with `or_equal`), united into `out` (numbers: [`SortedColumn`]).
    fn range_into(&self, side: Ordering, or_equal: bool, x: &Scalar, out: &mut Bits) {
        if side == Ordering::Equal {
            // Not produced by the parser; the plain meaning is equality.
            if let Some(p) = self.get(x) {
                p.or_into(out);
            }
            return;
        }
        match x {
            // Bools compare only for equality.
            Scalar::Bool(b) if or_equal => self.bools[usize::from(*b)].or_into(out),
            Scalar::Bool(_) => {}
            Scalar::Str(s) => self
                .strs
                .range::<str, _>(bounds(side, or_equal, s.as_str()))
                .for_each(|(_, p)| p.or_into(out)),
            _ => {}
        }
    }

    fn memory(&self) -> usize {
        let p = std::mem::size_of::<Posting>();
        self.bools.iter().map(Posting::memory).sum::<usize>()
            + self
                .nums
                .values()
                .map(|v| v.memory() + p + 16)
                .sum::<usize>()
            + self
                .strs
                .iter()
                .map(|(k, v)| k.capacity() + 24 + v.memory() + p)
                .sum::<usize>()
    }
}

/// Entries per chunk of a [`SortedColumn`]: a chunk splits at twice this.
const CHUNK: usize = if cfg!(test) { 4 } else { 256 };

/// One field's numeric scalar values with their rows, in value order: chunks of a few hundred
/// `(value, row)` entries (the leaf level of a B+-tree, with the chunks' last entries in one
/// array above them), so an insert or a removal moves at most one chunk and a range is two
/// binary searches and a sequential scan.
#[derive(Default)]
struct SortedColumn {
    /// Non-empty chunks; each chunk's entries, and the chunks in turn, ascending.
    chunks: Vec<Vec<(Num, u32)>>,
    /// The last entry of each chunk.
    lasts: Vec<(Num, u32)>,
}

impl SortedColumn {
    /// The chunk where `e` belongs: the first whose last entry is not below it, else the last.
    fn chunk_of(&self, e: &(Num, u32)) -> usize {
        let c = self.lasts.partition_point(|l| l < e);
        c.min(self.chunks.len().saturating_sub(1))
    }

    /// The column of `entries` (sorted, no repeats).
    fn from_sorted(entries: &[(Num, u32)]) -> SortedColumn {
        let chunks: Vec<Vec<(Num, u32)>> = entries.chunks(CHUNK).map(<[_]>::to_vec).collect();
        let lasts = chunks.iter().map(|c| c[c.len() - 1]).collect();
        SortedColumn { chunks, lasts }
    }

    /// Splits chunk `c` when full.
    fn split(&mut self, c: usize) {
        if self.chunks[c].len() >= 2 * CHUNK {
            let tail = self.chunks[c].split_off(CHUNK);
            self.lasts.insert(c + 1, self.lasts[c]);
            self.chunks.insert(c + 1, tail);
            self.lasts[c] = self.chunks[c][CHUNK - 1];
        }
    }

    fn insert(&mut self, v: Num, row: usize) {
        let e = (v, row as u32);
        if self.chunks.is_empty() {
            self.chunks.push(Vec::with_capacity(CHUNK));
            self.lasts.push(e);
        }
        let c = self.chunk_of(&e);
        let ch = &mut self.chunks[c];
        let at = ch.partition_point(|x| *x < e);
        if ch.get(at) == Some(&e) {
            return;
        }
        ch.insert(at, e);
        if at + 1 == ch.len() {
            self.lasts[c] = e;
        }
        self.split(c);
    }

    fn remove(&mut self, v: Num, row: usize) {
        let e = (v, row as u32);
        if self.chunks.is_empty() {
            return;
        }
        let c = self.chunk_of(&e);
        let ch = &mut self.chunks[c];
        let at = ch.partition_point(|x| *x < e);
        if ch.get(at) != Some(&e) {
            return;
        }
        ch.remove(at);
        match ch.last() {
            None => {
                self.chunks.remove(c);
                self.lasts.remove(c);
            }
            Some(&l) => {
                self.lasts[c] = l;
                if ch.len() < CHUNK / 4 && c + 1 < self.chunks.len() {
                    // A thin chunk joins the next one (which splits again if that is full).
                    let mut next = self.chunks.remove(c + 1);
                    self.lasts.remove(c);
                    self.chunks[c].append(&mut next);
                    self.split(c);
                }
            }
        }
    }

    /// The rows of the values within `(lo, hi)`, united into `out` (which spans every row).
    fn range_into(&self, lo: Bound<Num>, hi: Bound<Num>, out: &mut Bits) {
        let above_lo = |v: &Num| match lo {
            Bound::Included(x) => *v >= x,
            Bound::Excluded(x) => *v > x,
            Bound::Unbounded => true,
        };
        let below_hi = |v: &Num| match hi {
            Bound::Included(x) => *v <= x,
            Bound::Excluded(x) => *v < x,
            Bound::Unbounded => true,
        };
        // The first chunk whose last value is at or above `lo`, and from where in it.
        let first = self.lasts.partition_point(|(v, _)| !above_lo(v));
        for (i, ch) in self.chunks[first..].iter().enumerate() {
            let from = if i == 0 {
                ch.partition_point(|(v, _)| !above_lo(v))
            } else {
                0
            };
            let part = &ch[from..];
            let to = part.partition_point(|(v, _)| below_hi(v));
            part[..to].iter().for_each(|&(_, r)| out.set(r as usize));
            if to < part.len() {
                break;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    fn memory(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.capacity() * std::mem::size_of::<(Num, u32)>() + 24)
            .sum()
    }
}

impl Column {
    /// Adds `row`'s `value` (a mirror of `rows` rows).
    fn add(&mut self, value: &MetaValue, row: usize, rows: usize) {
        self.present.insert(row, rows);
        match value {
            MetaValue::One(s) => {
                self.one.insert(s, row, rows);
                if let Some(n) = Num::of(s) {
                    self.sorted.insert(n, row);
                }
            }
            MetaValue::List(items) => items.iter().for_each(|s| self.items.insert(s, row, rows)),
        }
    }
}

/// One field's values as collected for a bulk build: `(value, row)` pairs.
#[derive(Default)]
struct Raw<'a> {
    bools: [Vec<u32>; 2],
    nums: Vec<(Num, u32)>,
    strs: Vec<(&'a str, u32)>,
}

impl<'a> Raw<'a> {
    fn push(&mut self, s: &'a Scalar, row: usize) {
        let r = row as u32;
        match s {
            Scalar::Bool(b) => self.bools[usize::from(*b)].push(r),
            Scalar::Str(x) => self.strs.push((x.as_str(), r)),
            _ => self.nums.extend(Num::of(s).map(|n| (n, r))),
        }
    }

    /// Sorts by value then row, without repeats (a list may hold an item twice).
    fn sort(&mut self) {
        for b in &mut self.bools {
            b.dedup();
        }
        self.nums.sort_unstable();
        self.nums.dedup();
        self.strs.sort_unstable();
        self.strs.dedup();
    }
}

/// Consecutive runs of equal values in `pairs` (sorted) as `(value, posting)`.
fn runs<K: PartialEq + Copy>(pairs: &[(K, u32)], rows: usize) -> Vec<(K, Posting)> {
    pairs
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| {
            let list = run.iter().map(|&(_, r)| r).collect();
            (run[0].0, Posting::from_rows(list, rows))
        })
        .collect()
}

impl Values {
    /// The postings of sorted [`Raw`] values in a mirror of `rows` rows.
    fn from_raw(raw: &Raw<'_>, rows: usize) -> Values {
        Values {
            bools: raw
                .bools
                .each_ref()
                .map(|b| Posting::from_rows(b.clone(), rows)),
            nums: runs(&raw.nums, rows).into_iter().collect(),
            strs: runs(&raw.strs, rows)
                .into_iter()
                .map(|(k, p)| (k.to_string(), p))
                .collect(),
        }
    }
}

/// One metadata field's indexes.
#[derive(Default)]
struct Column {
    /// Rows that have the field.
    present: Posting,
    /// Scalar values, by value.
    one: Values,
    /// Numeric scalar values in order, for ranges.
    sorted: SortedColumn,
    /// Items of list values, by value.
    items: Values,
}

// ---------------------------------------------------------------------------------------------
// The columnar mirror.

/// Removed rows are compacted away once they are this share of the rows ...
pub const COMPACT_SHARE: f64 = 0.25;
/// ... and at least this many.
pub const COMPACT_MIN: usize = 64;
/// [`Mirror::extend`] builds the columns anew for a batch of at least this many records.
pub const BULK_MIN: usize = if cfg!(test) { 16 } else { 1024 };

/// The collection's mirror: records in dense rows, each metadata field a column with inverted
/// and ordered indexes. See the module comment.
#[derive(Default)]
pub struct ColumnMirror {
    /// Row → key (a removed row keeps its last key).
    keys: Vec<i64>,
    /// Row → str id (empty once removed).
    ids: Vec<String>,
    /// Row → metadata (`None` once removed).
    metas: Vec<Option<Metadata>>,
    /// Key → row, live records only.
    row_of: IdHashMap<u32>,
    /// The live rows.
    live: Bits,
    fields: HashMap<String, Column>,
    /// Every row was appended with a key above all earlier ones (or the rows were renumbered
    /// in key order since): ascending rows hold ascending keys.
    sorted: bool,
    /// The largest key held since the mirror was made.
    max_key: Option<i64>,
    /// A negative key was held since the mirror was made.
    negative_keys: bool,
}

impl ColumnMirror {
    pub fn new() -> Self {
        ColumnMirror {
            sorted: true,
            ..Default::default()
        }
    }

    /// Rows in use, removed ones not yet compacted included.
    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    /// Number of distinct metadata fields held.
    pub fn fields(&self) -> usize {
        self.fields.len()
    }

    /// Approximate heap bytes of the indexes (the rows' ids and metadata excluded).
    pub fn index_memory(&self) -> usize {
        self.live.memory()
            + self.row_of.capacity() * 13
            + self.keys.capacity() * 8
            + self
                .fields
                .iter()
                .map(|(k, c)| {
                    k.capacity()
                        + c.present.memory()
                        + c.one.memory()
                        + c.sorted.memory()
                        + c.items.memory()
                })
                .sum::<usize>()
    }

    /// Adds `row`'s metadata to the columns.
    fn index_row(&mut self, row: usize) {
        let rows = self.keys.len();
        let Some(meta) = &self.metas[row] else {
            return;
        };
        for (name, value) in &meta.0 {
            match self.fields.get_mut(name.as_str()) {
                Some(col) => col.add(value, row, rows),
                None => {
                    let mut col = Column::default();
                    col.add(value, row, rows);
                    self.fields.insert(name.clone(), col);
                }
            }
        }
    }

    /// Removes `row`'s metadata from the columns (dropping columns left empty).
    fn unindex_row(&mut self, row: usize) {
        let rows = self.keys.len();
        let Some(meta) = &self.metas[row] else {
            return;
        };
        for (name, value) in &meta.0 {
            let Some(col) = self.fields.get_mut(name.as_str()) else {
                continue;
            };
            col.present.remove(row, rows);
            match value {
                MetaValue::One(s) => {
                    col.one.remove(s, row, rows);
                    if let Some(n) = Num::of(s) {
                        col.sorted.remove(n, row);
                    }
                }
                MetaValue::List(items) => items.iter().for_each(|s| col.items.remove(s, row, rows)),
            }
            if col.present.is_empty() {
                self.fields.remove(name.as_str());
            }
        }
    }

    /// Renumbers the live rows in key order and rebuilds the columns.
    fn compact(&mut self) {
        let mut order: Vec<usize> = self.live.ones().collect();
        order.sort_unstable_by_key(|&r| self.keys[r]);
        let n = order.len();
        let (mut keys, mut ids, mut metas) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut row_of = IdHashMap::default();
        row_of.reserve(n);
        for (new, &old) in order.iter().enumerate() {
            keys.push(self.keys[old]);
            ids.push(std::mem::take(&mut self.ids[old]));
            metas.push(self.metas[old].take());
            row_of.insert(self.keys[old], new as u32);
        }
        self.keys = keys;
        self.ids = ids;
        self.metas = metas;
        self.row_of = row_of;
        self.live = Bits::zeros(n);
        for r in 0..n {
            self.live.set(r);
        }
        self.sorted = true;
        self.build_columns();
    }

    /// Builds every column anew from the live rows' metadata: one sort per field and kind of
    /// value instead of an ordered insertion per value.
    fn build_columns(&mut self) {
        let rows = self.keys.len();
        #[derive(Default)]
        struct Acc<'a> {
            present: Vec<u32>,
            one: Raw<'a>,
            items: Raw<'a>,
        }
        let mut acc: HashMap<&str, Acc<'_>> = HashMap::new();
        for r in self.live.ones() {
            let Some(meta) = &self.metas[r] else {
                continue;
            };
            for (name, value) in &meta.0 {
                let a = acc.entry(name.as_str()).or_default();
                a.present.push(r as u32);
                match value {
                    MetaValue::One(s) => a.one.push(s, r),
                    MetaValue::List(items) => items.iter().for_each(|s| a.items.push(s, r)),
                }
            }
        }
        let fields = acc
            .into_iter()
            .map(|(name, mut a)| {
                a.one.sort();
                a.items.sort();
                let col = Column {
                    present: Posting::from_rows(a.present, rows),
                    one: Values::from_raw(&a.one, rows),
                    sorted: SortedColumn::from_sorted(&a.one.nums),
                    items: Values::from_raw(&a.items, rows),
                };
                (name.to_string(), col)
            })
            .collect();
        self.fields = fields;
    }

    /// Appends a row for a new key (not indexed yet).
    fn push_row(&mut self, key: i64, id: String, meta: Option<Metadata>) -> usize {
        if self.keys.len() >= u32::MAX as usize {
            self.compact();
        }
        let row = self.keys.len();
        if self.max_key.is_some_and(|m| key <= m) {
            self.sorted = false;
        }
        self.max_key = Some(self.max_key.map_or(key, |m| m.max(key)));
        self.negative_keys |= key < 0;
        self.keys.push(key);
        self.ids.push(id);
        self.metas.push(meta);
        self.live.insert(row);
        self.row_of.insert(key, row as u32);
        row
    }

    fn maybe_compact(&mut self) {
        let dead = self.keys.len() - self.row_of.len();
        if dead >= COMPACT_MIN && dead as f64 >= COMPACT_SHARE * self.keys.len() as f64 {
            self.compact();
        }
    }

    /// The rows `w` matches.
    fn eval(&self, w: &Where) -> Bits {
        match w {
            Where::And(ws) => {
                let mut it = ws.iter();
                let Some(first) = it.next() else {
                    return self.live.clone();
                };
                let mut acc = self.eval(first);
                for w in it {
                    if acc.is_empty() {
                        break;
                    }
                    acc.and_assign(&self.eval(w));
                }
                acc
            }
            Where::Or(ws) => {
                let mut acc = Bits::zeros(self.keys.len());
                for w in ws {
                    acc.or_assign(&self.eval(w));
                }
                acc
            }
            Where::Not(w) => {
                let mut acc = self.live.clone();
                acc.andnot_assign(&self.eval(w));
                acc
            }
            Where::Field(name, op) => self.leaf(self.fields.get(name.as_str()), op),
        }
    }

    fn leaf(&self, col: Option<&Column>, op: &FieldOp) -> Bits {
        let mut out = Bits::zeros(self.keys.len());
        match (op, col) {
            (FieldOp::Exists(false), None) => return self.live.clone(),
            (FieldOp::Exists(false), Some(c)) => {
                let mut has = Bits::zeros(self.keys.len());
                c.present.or_into(&mut has);
                out = self.live.clone();
                out.andnot_assign(&has);
            }
            (_, None) => {}
            (FieldOp::Exists(true), Some(c)) => c.present.or_into(&mut out),
            (FieldOp::Eq(x), Some(c)) => {
                if let Some(p) = c.one.get(x) {
                    p.or_into(&mut out);
                }
            }
            (FieldOp::In(xs), Some(c)) => {
                for x in xs {
                    if let Some(p) = c.one.get(x) {
                        p.or_into(&mut out);
                    }
                }
            }
            (FieldOp::Cmp(side, or_equal, x), Some(c)) => match Num::of(x) {
                Some(n) if *side != Ordering::Equal => {
                    let (lo, hi) = bounds(*side, *or_equal, n);
                    c.sorted.range_into(lo, hi, &mut out);
                }
                _ => c.one.range_into(*side, *or_equal, x, &mut out),
            },
            (FieldOp::Contains(x), Some(c)) => {
                if let Some(p) = c.items.get(x) {
                    p.or_into(&mut out);
                }
            }
        }
        out
    }

    /// Checks that every structure agrees with the rows' metadata (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut want = ColumnMirror::new();
        want.keys = self.keys.clone();
        want.metas = self.metas.clone();
        want.live = self.live.clone();
        for r in self.live.ones() {
            want.index_row(r);
        }
        assert_eq!(self.live.count(), self.row_of.len());
        for (&k, &r) in &self.row_of {
            assert_eq!(self.keys[r as usize], k);
            assert!(self.live.contains(r as usize));
        }
        for r in 0..self.keys.len() {
            if !self.live.contains(r) {
                assert!(self.metas[r].is_none() && self.ids[r].is_empty());
            }
        }
        let rows = |p: &Posting| {
            let mut b = Bits::zeros(self.keys.len());
            p.or_into(&mut b);
            b.ones().collect::<Vec<_>>()
        };
        let values = |a: &Values, b: &Values| {
            assert_eq!(a.bools.each_ref().map(rows), b.bools.each_ref().map(rows));
            assert!(a.nums.keys().eq(b.nums.keys()));
            assert!(a.strs.keys().eq(b.strs.keys()));
            for (p, q) in a.nums.values().zip(b.nums.values()) {
                assert_eq!(rows(p), rows(q));
                assert_eq!(p.len(), rows(p).len());
            }
            for (p, q) in a.strs.values().zip(b.strs.values()) {
                assert_eq!(rows(p), rows(q));
                assert_eq!(p.len(), rows(p).len());
            }
        };
        let mut names: Vec<_> = self.fields.keys().collect();
        names.sort();
        let mut want_names: Vec<_> = want.fields.keys().collect();
        want_names.sort();
        assert_eq!(names, want_names);
        for (name, c) in &self.fields {
            let w = &want.fields[name];
            assert_eq!(rows(&c.present), rows(&w.present));
            assert_eq!(c.present.len(), rows(&c.present).len());
            values(&c.one, &w.one);
            values(&c.items, &w.items);
            assert!(c
                .sorted
                .chunks
                .iter()
                .all(|ch| !ch.is_empty() && ch.len() < 2 * CHUNK));
            let lasts: Vec<_> = c.sorted.chunks.iter().map(|ch| ch[ch.len() - 1]).collect();
            assert_eq!(c.sorted.lasts, lasts);
            let flat: Vec<_> = c.sorted.chunks.iter().flatten().collect();
            let want_flat: Vec<_> = w.sorted.chunks.iter().flatten().collect();
            assert_eq!(flat, want_flat);
            assert_eq!(
                c.sorted.len(),
                c.one.nums.values().map(Posting::len).sum::<usize>()
            );
        }
        if self.sorted {
            let live: Vec<i64> = self.live.ones().map(|r| self.keys[r]).collect();
            assert!(live.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

impl Mirror for ColumnMirror {
    fn insert(&mut self, key: i64, id: String, meta: Option<Metadata>) {
        if let Some(&row) = self.row_of.get(&key) {
            let row = row as usize;
            self.unindex_row(row);
            self.ids[row] = id;
            self.metas[row] = meta;
            self.index_row(row);
            return;
        }
        let row = self.push_row(key, id, meta);
        self.index_row(row);
    }

    /// A batch of at least [`BULK_MIN`] records and a quarter of the mirror compacts and
    /// rebuilds every column at once (opening a collection, a large catch-up or write); smaller
    /// ones are inserted in turn.
    fn extend(&mut self, records: Vec<(i64, String, Option<Metadata>)>) {
        if records.len() < BULK_MIN || records.len() < self.len() / 4 {
            for (key, id, meta) in records {
                self.insert(key, id, meta);
            }
            return;
        }
        for (key, id, meta) in records {
            match self.row_of.get(&key) {
                Some(&row) => {
                    self.ids[row as usize] = id;
                    self.metas[row as usize] = meta;
                }
                None => {
                    self.push_row(key, id, meta);
                }
            }
        }
        // Renumbers in key order too (rows may have arrived in any order).
        self.compact();
    }

    fn remove(&mut self, key: i64) {
        let Some(row) = self.row_of.remove(&key) else {
            return;
        };
        let row = row as usize;
        self.unindex_row(row);
        self.live.remove(row);
        self.ids[row] = String::new();
        self.metas[row] = None;
        self.maybe_compact();
    }

    fn len(&self) -> usize {
        self.row_of.len()
    }

    fn id(&self, key: i64) -> Option<&str> {
        self.row_of
            .get(&key)
            .map(|&r| self.ids[r as usize].as_str())
    }

    fn metadata(&self, key: i64) -> Option<&Metadata> {
        self.row_of
            .get(&key)
            .and_then(|&r| self.metas[r as usize].as_ref())
    }

    fn contains(&self, key: i64) -> bool {
        self.row_of.contains_key(&key)
    }

    fn matching(&self, filter: &Where) -> Vec<i64> {
        self.select(filter).keys()
    }

    fn select(&self, filter: &Where) -> Matches<'_> {
        let rows = self.eval(filter);
        let key_end = match self.max_key {
            None => Some(0),
            Some(m) => usize::try_from(m).ok().and_then(|m| m.checked_add(1)),
        };
        // A negative key has no place in a mask.
        let key_end = key_end.filter(|_| !self.negative_keys);
        Matches(Repr::Rows {
            count: rows.count(),
            rows,
            keys: &self.keys,
            sorted: self.sorted,
            key_end,
        })
    }
}

#[cfg(test)]
mod tests;
