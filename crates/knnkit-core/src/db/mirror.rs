//! The in-memory mirror of a collection's records: for each index id, the record's str id and
//! metadata. Queries map index hits back to str ids through it and evaluate `where` filters on
//! it without touching SQLite.
//!
//! [`Mirror`] is the interface the collection uses; [`RowMirror`] is the plain implementation
//! (a hash map, filters evaluated record by record: O(records) per filtered call). A columnar
//! mirror with inverted and sorted indexes can replace it behind the same trait.

use super::meta::Metadata;
use super::predicate::Where;
use crate::ids::IdHashMap;

/// What a collection keeps in memory about each record, besides its vector.
pub trait Mirror: Send + Sync {
    /// Records `key`'s str id and metadata (replacing what `key` had).
    fn insert(&mut self, key: i64, id: String, meta: Option<Metadata>);
    /// Forgets `key` (unknown keys are ignored).
    fn remove(&mut self, key: i64);
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
}

struct Row {
    id: String,
    meta: Option<Metadata>,
}

/// A hash map from index id to the record's id and metadata.
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
