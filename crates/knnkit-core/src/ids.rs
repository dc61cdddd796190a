//! External ids: the one place they are validated, assigned, mapped to slots, deleted and
//! turned into filters, for every index kind.
//!
//! Every index stores its vectors in *slots* `0..n` and reports *ids*: caller-chosen int64
//! values, non-negative (−1 marks a missing result) and unique among the live slots. [`IdMap`]
//! holds `slot → id` as a vector and `id → slot` as a hash map; both change together, so they
//! always agree. Two ways to delete, one per index layout:
//!
//! - *tombstones* (HNSW, whose graph needs the slot until it is repaired):
//!   [`IdMap::tombstone`] drops the id from the map and flags the slot; the slot keeps its id,
//!   the id may be added again on a new slot, and [`IdMap::renumber`] compacts later;
//! - *swap-remove* (IVF, whose lists address slots directly): [`IdMap::swap_remove`] moves the
//!   last slot into the hole, O(1); the caller moves its own per-slot data the same way.
//!
//! Flat indexes close up in order with [`IdMap::retain`]. Filters ([`IdMap::allowed_from_ids`],
//! [`IdMap::allowed_from_mask`]) become a bitset of live slots, so a search tests one bit per
//! candidate.
//!
//! Cost: O(1) lookup, add, tombstone and swap-remove; O(n) to compact (the map is rebuilt).

use std::collections::{HashMap, TryReserveError};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};
use crate::filter::Allowed;

use crate::validate::MAX_SLOTS;

/// A hasher for integer keys: one multiply by a large odd constant, high bits folded down
/// (ids are not chosen by an adversary who could profit from collisions: a collision costs
/// time, never a wrong answer). Several times faster than the default SipHash here.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, v: i64) {
        let x = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

/// A map keyed by id.
pub type IdHashMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// Checks the ids of a batch to add, for every index kind: non-negative, no repeats within the
/// batch, and none for which `live` says it is already in the index (capacity is the caller's).
pub fn check_new_ids(new: &[i64], live: impl Fn(i64) -> bool) -> Result<()> {
    if let Some(&bad) = new.iter().find(|&&id| id < 0) {
        return Err(Error::param(
            "ids",
            "non-negative integers (-1 marks a missing result)",
            bad,
        ));
    }
    let twice = |id: i64| {
        Error::param(
            "ids",
            "ids not already in the index and no repeats",
            format!("{id} twice"),
        )
    };
    if let Some(&id) = new.iter().find(|&&id| live(id)) {
        return Err(twice(id));
    }
    if !new.windows(2).all(|w| w[0] < w[1]) {
        let mut sorted = new.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(twice(w[0]));
        }
    }
    Ok(())
}

/// `slot → id` and `id → slot`, with tombstones.
///
/// Invariants: `slot_of` maps exactly the ids of the live (not deleted) slots, each to its
/// slot. A deleted slot keeps its id in `ids` until it is compacted away ([`IdMap::renumber`]),
/// so the same id may sit on deleted slots and, re-added, on one live slot. `deleted` is empty
/// until the first tombstone, then one flag per slot; `n_deleted` counts the flags set.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    ids: Vec<i64>,
    slot_of: IdHashMap<u32>,
    deleted: Vec<bool>,
    n_deleted: usize,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map over `ids` (slot i holds `ids[i]`), checked: non-negative, unique, addressable
    /// ([`Error::Corrupt`] otherwise).
    pub fn from_ids(ids: Vec<i64>) -> Result<Self> {
        Self::with_deleted(ids, Vec::new())
    }

    /// [`IdMap::from_ids`] with tombstones: `deleted` is empty (none) or has one flag per slot.
    /// Ids must be non-negative, and unique among the live slots.
    pub fn with_deleted(ids: Vec<i64>, deleted: Vec<bool>) -> Result<Self> {
        let corrupt = |what: String| Error::Corrupt(format!("ids: {what}"));
        if ids.len() > MAX_SLOTS {
            return Err(corrupt(format!("more than {MAX_SLOTS} slots")));
        }
        if !deleted.is_empty() && deleted.len() != ids.len() {
            return Err(corrupt(format!(
                "{} deleted flags for {} slots",
                deleted.len(),
                ids.len()
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id < 0) {
            return Err(corrupt(format!("negative id {bad}")));
        }
        let mut slot_of = IdHashMap::default();
        slot_of
            .try_reserve(ids.len())
            .map_err(|_| corrupt(format!("{} ids cannot be allocated", ids.len())))?;
        for (s, &id) in ids.iter().enumerate() {
            if !deleted.get(s).copied().unwrap_or(false) && slot_of.insert(id, s as u32).is_some() {
                return Err(corrupt(format!("id {id} on two live slots")));
            }
        }
        let n_deleted = ids.len() - slot_of.len();
        Ok(IdMap {
            ids,
            slot_of,
            deleted: if n_deleted > 0 { deleted } else { Vec::new() },
            n_deleted,
        })
    }

    /// Number of slots, deleted ones included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no slot is used.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of live slots.
    pub fn n_live(&self) -> usize {
        self.ids.len() - self.n_deleted
    }

    /// Number of deleted slots.
    pub fn n_deleted(&self) -> usize {
        self.n_deleted
    }

    /// The id of every slot, in slot order (deleted slots keep theirs).
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The ids of the live slots, in slot order.
    pub fn live_ids(&self) -> Vec<i64> {
        match self.tombstones() {
            None => self.ids.clone(),
            Some(dead) => (self.ids.iter().zip(dead))
                .filter(|&(_, &d)| !d)
                .map(|(&id, _)| id)
                .collect(),
        }
    }

    /// The live slot holding `id`.
    pub fn slot(&self, id: i64) -> Option<usize> {
        self.slot_of.get(&id).map(|&s| s as usize)
    }

    /// The id of `slot`.
    #[inline(always)]
    pub fn id(&self, slot: usize) -> i64 {
        self.ids[slot]
    }

    /// The deleted flag of every slot, or `None` while no slot is deleted (search loops test
    /// this once, then one flag per candidate).
    #[inline(always)]
    pub fn tombstones(&self) -> Option<&[bool]> {
        (self.n_deleted > 0).then_some(&self.deleted[..])
    }

    /// True when `slot` is deleted.
    #[inline(always)]
    pub fn is_deleted(&self, slot: usize) -> bool {
        self.n_deleted > 0 && self.deleted[slot]
    }

    /// One past the largest id (0 when empty): where default ids continue.
    pub fn next_after_max(&self) -> i64 {
        self.ids.iter().max().map_or(0, |&m| m.saturating_add(1))
    }

    /// Checks that `n` more slots can be numbered.
    fn check_capacity(&self, n: usize) -> Result<()> {
        if self.ids.len().saturating_add(n) > MAX_SLOTS {
            return Err(Error::param(
                "ids",
                format!(
                    "at most {MAX_SLOTS} slots in one index (deleted ones count until compacted)"
                ),
                self.ids.len().saturating_add(n),
            ));
        }
        Ok(())
    }

    /// Checks that `new` can be added: non-negative, no repeats, none live (a deleted id may
    /// come back), and the slots they need can be numbered.
    pub fn check_new(&self, new: &[i64]) -> Result<()> {
        self.check_capacity(new.len())?;
        check_new_ids(new, |id| self.slot_of.contains_key(&id))
    }

    /// `n` consecutive ids from `next` (the default ids of an add), checked.
    pub fn assign(&self, n: usize, next: i64) -> Result<Vec<i64>> {
        let last = i64::try_from(n)
            .ok()
            .and_then(|n| next.checked_add(n))
            .ok_or_else(|| {
                Error::param(
                    "ids",
                    "explicit ids: the default ids continue after the largest id, which is \
                     too close to 2**63 - 1",
                    next,
                )
            })?;
        let new: Vec<i64> = (next..last).collect();
        if next >= self.next_after_max() {
            // Above every stored id and increasing: only the capacity can fail.
            self.check_capacity(new.len())?;
        } else {
            self.check_new(&new)?;
        }
        Ok(new)
    }

    /// Room for `n` more slots: exactly `n` when that is at least a quarter of the slots (bulk
    /// loads leave no doubling slack), amortised otherwise. An error when it cannot be
    /// allocated (the contents are unchanged).
    pub fn try_reserve(&mut self, n: usize) -> Result<()> {
        fn room<T>(v: &mut Vec<T>, n: usize) -> std::result::Result<(), TryReserveError> {
            if n.saturating_mul(4) >= v.len() {
                v.try_reserve_exact(n)
            } else {
                v.try_reserve(n)
            }
        }
        let fail = |_| Error::param("ids", "a number of ids that can be allocated", n);
        room(&mut self.ids, n).map_err(fail)?;
        if !self.deleted.is_empty() {
            room(&mut self.deleted, n).map_err(fail)?;
        }
        self.slot_of.try_reserve(n).map_err(fail)
    }

    /// Slots that fit before the arrays grow.
    pub fn capacity(&self) -> usize {
        self.ids.capacity()
    }

    /// Gives memory back when the arrays hold less than four fifths of their room (after
    /// removals).
    pub fn shrink(&mut self) {
        let n = self.ids.len();
        if self.ids.capacity() > n + n / 4 + 16 {
            self.ids.shrink_to_fit();
            self.deleted.shrink_to_fit();
        }
        if self.slot_of.capacity() > 2 * self.slot_of.len() + 16 {
            self.slot_of.shrink_to_fit();
        }
    }

    /// Appends `new` (checked by the caller with [`IdMap::check_new`]) to fresh live slots.
    pub fn push(&mut self, new: &[i64]) {
        // Failing here, the pushes below grow the arrays the usual way.
        let _ = self.try_reserve(new.len());
        for &id in new {
            self.slot_of.insert(id, self.ids.len() as u32);
            self.ids.push(id);
        }
        if !self.deleted.is_empty() {
            self.deleted.resize(self.ids.len(), false);
        }
    }

    /// Drops slots `from..` (live ones: slots just pushed and not wanted after all).
    pub fn truncate(&mut self, from: usize) {
        for (s, id) in self.ids.drain(from..).enumerate() {
            if self.slot_of.get(&id) == Some(&((from + s) as u32)) {
                self.slot_of.remove(&id);
            }
        }
        if !self.deleted.is_empty() {
            self.n_deleted -= self.deleted[from..].iter().filter(|&&d| d).count();
            self.deleted.truncate(from);
        }
    }

    /// Deletes the live slot of `id`, keeping its id until compaction (a tombstone), and
    /// returns it; `None` when `id` is not live. The id may then be added again.
    pub fn tombstone(&mut self, id: i64) -> Option<usize> {
        let slot = self.slot_of.remove(&id)? as usize;
        if self.deleted.is_empty() {
            self.deleted = vec![false; self.ids.len()];
        }
        self.deleted[slot] = true;
        self.n_deleted += 1;
        Some(slot)
    }

    /// Removes `slot` (a live one's id leaves the map) by moving the last slot into it: O(1).
    /// Returns the old number of the moved slot, `None` when `slot` was the last.
    pub fn swap_remove(&mut self, slot: usize) -> Option<usize> {
        let last = self.ids.len() - 1;
        if self.slot_of.get(&self.ids[slot]) == Some(&(slot as u32)) {
            self.slot_of.remove(&self.ids[slot]);
        }
        if !self.deleted.is_empty() {
            self.n_deleted -= usize::from(self.deleted.swap_remove(slot));
        }
        self.ids.swap_remove(slot);
        if slot == last {
            return None;
        }
        if !self.is_deleted(slot) {
            self.slot_of.insert(self.ids[slot], slot as u32);
        }
        Some(last)
    }

    /// The slots holding `ids` live (absent ids skipped, repeats once), ascending.
    pub fn slots_of(&self, ids: &[i64]) -> Vec<usize> {
        let mut slots: Vec<usize> = ids.iter().filter_map(|&id| self.slot(id)).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Compacts: new slot `i` is old slot `order[i]` (live slots, each at most once); every
    /// other slot, deleted ones included, is dropped. O(n): the map is rebuilt.
    pub fn renumber(&mut self, order: &[u32]) {
        debug_assert!(order.iter().all(|&s| !self.is_deleted(s as usize)));
        self.ids = order.iter().map(|&s| self.ids[s as usize]).collect();
        self.deleted = Vec::new();
        self.n_deleted = 0;
        self.slot_of.clear();
        self.slot_of.shrink_to(self.ids.len());
        self.slot_of.reserve(self.ids.len());
        for (s, &id) in self.ids.iter().enumerate() {
            self.slot_of.insert(id, s as u32);
        }
    }

    /// Keeps the live slots where `keep` is true, in order (slot numbers close up).
    pub fn retain(&mut self, keep: &[bool]) {
        let order: Vec<u32> = (0..self.ids.len() as u32)
            .filter(|&s| keep[s as usize] && !self.is_deleted(s as usize))
            .collect();
        self.renumber(&order);
    }

    /// The live slots a filter allows, from an array of allowed ids (unknown ones ignored).
    pub fn allowed_from_ids(&self, allowed: &[i64]) -> Allowed {
        Allowed::from_slots(
            self.len(),
            allowed
                .iter()
                .filter_map(|&id| self.slot_of.get(&id).copied()),
        )
    }

    /// The live slots a filter allows, from a boolean mask indexed by id (ids past its end are
    /// not allowed).
    pub fn allowed_from_mask(&self, mask: &[bool]) -> Allowed {
        let dead = self.tombstones();
        Allowed::from_slots(
            self.len(),
            self.ids
                .iter()
                .enumerate()
                .filter(|&(s, &id)| {
                    usize::try_from(id).is_ok_and(|i| i < mask.len() && mask[i])
                        && dead.is_none_or(|d| !d[s])
                })
                .map(|(s, _)| s as u32),
        )
    }

    /// Heap bytes held.
    pub fn memory_usage(&self) -> usize {
        // A map entry: the (id, slot) pair, padded, and one control byte.
        let entry = std::mem::size_of::<(i64, u32)>() + 1;
        self.ids.capacity() * 8 + self.slot_of.capacity() * entry + self.deleted.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_assigns_maps_and_filters() {
        let mut m = IdMap::new();
        assert!(m.check_new(&[1, -2]).is_err());
        assert!(m.check_new(&[3, 3]).is_err());
        m.push(&[10, 20, 30]);
        assert!(m.check_new(&[20]).is_err());
        assert_eq!(m.assign(2, m.next_after_max()).unwrap(), vec![31, 32]);
        assert!(m.assign(2, i64::MAX).is_err());
        assert_eq!(m.slots_of(&[30, 10, 99, 30]), vec![0, 2]);
        m.retain(&[true, false, true]);
        assert_eq!(
            (m.ids(), m.slot(30), m.slot(20)),
            (&[10, 30][..], Some(1), None)
        );
        let a = m.allowed_from_mask(&[false; 11].map(|_| true));
        assert_eq!((a.count(), a.contains(0), a.contains(1)), (1, true, false));
        let a = m.allowed_from_ids(&[30, 7]);
        assert_eq!((a.count(), a.contains(1)), (1, true));
        assert!(IdMap::from_ids(vec![1, 1]).is_err());
        assert!(IdMap::from_ids(vec![-1]).is_err());
    }

    #[test]
    fn tombstones_re_adds_and_compaction() {
        let mut m = IdMap::from_ids(vec![10, 20, 30, 40]).unwrap();
        assert_eq!((m.tombstones(), m.is_deleted(1)), (None, false));
        assert_eq!(m.tombstone(20), Some(1));
        assert_eq!(m.tombstone(20), None, "already deleted");
        assert_eq!((m.n_live(), m.n_deleted(), m.slot(20)), (3, 1, None));
        assert_eq!(m.tombstones(), Some(&[false, true, false, false][..]));
        assert_eq!(m.id(1), 20, "a deleted slot keeps its id");
        // A deleted id may come back on a new slot; a live one may not.
        assert!(m.check_new(&[30]).is_err());
        m.check_new(&[20]).unwrap();
        m.push(&[20, 50]);
        assert_eq!((m.slot(20), m.len(), m.n_live()), (Some(4), 6, 5));
        assert_eq!(m.live_ids(), vec![10, 30, 40, 20, 50]);
        // Filters see live slots only, the deleted copy of 20 never.
        let a = m.allowed_from_mask(&[true; 60]);
        assert_eq!((a.count(), a.contains(1), a.contains(4)), (5, false, true));
        let a = m.allowed_from_ids(&[20, 99]);
        assert_eq!((a.count(), a.contains(4)), (1, true));
        // Saved and loaded: the id twice, once live.
        let dead: Vec<bool> = (0..m.len()).map(|s| m.is_deleted(s)).collect();
        let back = IdMap::with_deleted(m.ids().to_vec(), dead.clone()).unwrap();
        assert_eq!((back.slot(20), back.n_deleted()), (Some(4), 1));
        assert!(IdMap::with_deleted(m.ids().to_vec(), vec![false; 6]).is_err());
        assert!(IdMap::with_deleted(m.ids().to_vec(), vec![true; 5]).is_err());
        // An add undone: the new slots go, the tombstone stays.
        m.push(&[60]);
        m.truncate(6);
        assert_eq!((m.len(), m.slot(60), m.n_deleted()), (6, None, 1));
        // Compaction in a new order drops the tombstones.
        m.tombstone(40);
        m.renumber(&[4, 0, 5, 2]);
        assert_eq!(m.ids(), &[20, 10, 50, 30]);
        assert_eq!(
            (m.slot(20), m.slot(30), m.slot(40)),
            (Some(0), Some(3), None)
        );
        assert_eq!((m.n_deleted(), m.tombstones()), (0, None));
        m.tombstone(10);
        m.retain(&[true, true, false, true]);
        assert_eq!((m.ids(), m.n_deleted()), (&[20, 30][..], 0));
    }

    #[test]
    fn swap_remove_moves_the_last_slot() {
        let mut m = IdMap::from_ids(vec![5, 6, 7, 8]).unwrap();
        assert_eq!(m.swap_remove(1), Some(3));
        assert_eq!(
            (m.ids(), m.slot(8), m.slot(6)),
            (&[5, 8, 7][..], Some(1), None)
        );
        assert_eq!(m.swap_remove(2), None, "the last slot moves nowhere");
        assert_eq!((m.ids(), m.slot(7)), (&[5, 8][..], None));
        m.push(&[6, 7]);
        assert_eq!((m.slot(6), m.slot(7)), (Some(2), Some(3)));
    }
}
