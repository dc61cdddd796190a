//! A set of allowed slots (a bitset), built once per search call from the caller's ids.

/// Slots a filtered search may return.
#[derive(Clone, Debug)]
pub struct Allowed {
    bits: Vec<u64>,
    count: usize,
}

impl Allowed {
    /// The set of `slots` (each `< n`; repeats are counted once).
    pub fn from_slots(n: usize, slots: impl IntoIterator<Item = u32>) -> Self {
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut count = 0;
        for slot in slots {
            let s = slot as usize;
            let word = &mut bits[s >> 6];
            let bit = 1u64 << (s & 63);
            if *word & bit == 0 {
                *word |= bit;
                count += 1;
            }
        }
        Allowed { bits, count }
    }

    /// Number of allowed slots.
    pub fn count(&self) -> usize {
        self.count
    }

    #[inline(always)]
    pub fn contains(&self, slot: u32) -> bool {
        let s = slot as usize;
        (self.bits[s >> 6] >> (s & 63)) & 1 == 1
    }
}
