//! External ids: the one place they are validated, assigned, mapped to slots and turned into
//! filters.
//!
//! Every index stores its vectors in *slots* `0..n` and reports *ids*: caller-chosen int64
//! values, non-negative (−1 marks a missing result) and unique. [`IdMap`] holds `slot → id` as a
//! vector and `id → slot` as a hash map; both change together, so they always agree.
//!
//! Cost: O(1) lookup; O(n) to compact after removals (the map is rebuilt).

use std::collections::HashMap;
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

/// `slot → id` and `id → slot`.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    ids: Vec<i64>,
    slot_of: IdHashMap<u32>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map over `ids` (slot i holds `ids[i]`), checked: non-negative, unique, addressable.
    pub fn from_ids(ids: Vec<i64>) -> Result<Self> {
        let mut map = IdMap::new();
        map.check_new(&ids)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        map.push(&ids);
        Ok(map)
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no slot is used.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of every slot, in slot order.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The slot holding `id`.
    pub fn slot(&self, id: i64) -> Option<usize> {
        self.slot_of.get(&id).map(|&s| s as usize)
    }

    /// The id of `slot`.
    pub fn id(&self, slot: usize) -> i64 {
        self.ids[slot]
    }

    /// One past the largest id (0 when empty): where default ids continue.
    pub fn next_after_max(&self) -> i64 {
        self.ids.iter().max().map_or(0, |&m| m.saturating_add(1))
    }

    /// Checks that `new` can be added: non-negative, no repeats, none present, and the slots
    /// they need exist.
    fn check_capacity(&self, n: usize) -> Result<()> {
        if self.ids.len().saturating_add(n) > MAX_SLOTS {
            return Err(Error::param(
                "ids",
                format!("at most {MAX_SLOTS} vectors in one index"),
                self.ids.len().saturating_add(n),
            ));
        }
        Ok(())
    }

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

    /// Appends `new` (checked by the caller with [`IdMap::check_new`]) to fresh slots.
    pub fn push(&mut self, new: &[i64]) {
        self.slot_of.reserve(new.len());
        for &id in new {
            self.slot_of.insert(id, self.ids.len() as u32);
            self.ids.push(id);
        }
    }

    /// The slots holding `ids` (absent ids skipped, repeats once), ascending.
    pub fn slots_of(&self, ids: &[i64]) -> Vec<usize> {
        let mut slots: Vec<usize> = ids.iter().filter_map(|&id| self.slot(id)).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Keeps the slots where `keep` is true, in order (slot numbers close up).
    pub fn retain(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.ids.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.slot_of.clear();
        self.slot_of.shrink_to(self.ids.len());
        self.slot_of.reserve(self.ids.len());
        for (s, &id) in self.ids.iter().enumerate() {
            self.slot_of.insert(id, s as u32);
        }
    }

    /// The slots a filter allows, from an array of allowed ids (unknown ones ignored).
    pub fn allowed_from_ids(&self, allowed: &[i64]) -> Allowed {
        Allowed::from_slots(
            self.len(),
            allowed
                .iter()
                .filter_map(|&id| self.slot_of.get(&id).copied()),
        )
    }

    /// The slots a filter allows, from a boolean mask indexed by id (ids past its end are not
    /// allowed).
    pub fn allowed_from_mask(&self, mask: &[bool]) -> Allowed {
        Allowed::from_slots(
            self.len(),
            self.ids
                .iter()
                .enumerate()
                .filter(|&(_, &id)| usize::try_from(id).is_ok_and(|i| i < mask.len() && mask[i]))
                .map(|(s, _)| s as u32),
        )
    }

    /// Heap bytes held.
    pub fn memory_usage(&self) -> usize {
        self.ids.capacity() * 8 + self.slot_of.capacity() * 16
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
}
