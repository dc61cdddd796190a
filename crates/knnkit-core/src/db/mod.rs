//! The store: an embedded vector database whose source of truth is SQLite and whose indexes
//! are derived, disposable copies.
//!
//! ## Layout
//!
//! A store is a directory:
//!
//! ```text
//! store.sqlite3 (+ -wal, -shm)   the truth: collections, records, deletions, the sequence number
//! <collection>.<kind>.knn        index snapshots (knnkit's index file), one per collection
//! ```
//!
//! Tables (see `schema.rs`):
//!
//! - `meta(key, value)`: `schema_version`, `epoch` (a random number naming the database's
//!   history, new in each backup copy) and `seq`, the store's sequence number. Every write
//!   transaction takes the next number, and every row it writes carries it. Writers are
//!   serialised by SQLite's write lock, so commit order is sequence order: a reader that has
//!   applied everything up to `s` needs exactly the rows with `seq > s`.
//! - `collections(id, name, dim, metric, kind, params, created, next_key, pruned_seq)`: `id` is
//!   never reused (AUTOINCREMENT), so a collection deleted and created again under the same
//!   name is a different collection to every snapshot and every other process. `params` (JSON)
//!   holds the index's parameters, complete with defaults, and `embedder`: the name of the
//!   embedder (`knnkit.embed`) a collection was created with, if any. The core only stores it
//!   and checks that a later open naming an embedder names the same one (vectors from two
//!   models do not compare); the Python layer embeds, and on reopen it finds the built-in
//!   embedders by that name, so a collection made with one needs no `embedder=` again. The
//!   name is kept in `params` rather than a column of its own: no schema change, and it is
//!   part of what the collection is, like its metric.
//! - `records(collection, id, key, seq, vector, metadata, document)`: `id` is the user's str
//!   id, `key` the int64 id of the record's vector inside the index, `vector` float32
//!   little-endian, `metadata` the JSON of a checked object (`meta.rs`).
//! - `deletions(collection, seq, key)`: the log of keys that left the index: deleted records
//!   and replaced vectors.
//! - `fts_<collection id>`: the collection's FTS5 index of its documents (contentless, one row
//!   per record with a document, `rowid` = its key), changed by the same transactions as
//!   `records`: it is part of the truth, not of the derived state (see [`text`]). Schema
//!   version 2 added these tables; a version-1 store is migrated when opened.
//!
//! ## Invariants
//!
//! - **A key names one vector forever.** Keys come from the collection's `next_key` counter and
//!   are never reused; a record whose vector changes gets a new key and its old key goes to the
//!   deletion log. Replay is therefore idempotent set arithmetic: remove the keys logged after
//!   `s`, add the rows written after `s` whose key the index lacks. A metadata-only change keeps
//!   the key (the index is untouched; only the mirror changes).
//! - **Writes are all-or-nothing and durable when they return.** Each write call checks
//!   everything it can without the database (vectors finite and of the collection's dimension,
//!   metadata, ids non-empty and unique in the call) before it begins, then runs as one
//!   `BEGIN IMMEDIATE` transaction that checks what needs the database (ids that must or must
//!   not exist) and commits. With `synchronous=FULL` (the default) a commit is on disk when it
//!   returns; [`Durability::Normal`] drops the fsync at commit: a process crash loses nothing,
//!   a power cut or OS crash may lose the transactions committed since the last WAL
//!   checkpoint (SQLite checkpoints every ~1000 pages; they roll back cleanly, never corrupt).
//! - **The index follows SQLite, never leads it.** A writer commits, then applies the same
//!   change to the collection's in-memory index and mirror while it still holds the
//!   collection's lock, so in this process a `get` that sees a record and a `query` that misses
//!   it cannot both happen after the call returned. If applying fails after the commit (out of
//!   memory), the write still stands (it is durable) and the collection rebuilds its index
//!   from SQLite on its next call.
//! - **Other processes' writes** are found on every call: `PRAGMA data_version` (no table read)
//!   tells whether any other connection committed; when one did, the collection replays the
//!   rows and deletions after the sequence number it has applied.
//! - **Snapshots are hints.** [`Collection::snapshot`] writes the index atomically with
//!   `collection_id`, the database's `epoch` and `covers_seq` in its header. Opening a collection maps the snapshot,
//!   replays what came after `covers_seq`, and checks that the index holds exactly SQLite's
//!   keys. A missing, foreign (another collection, or another history of the database: a
//!   backup copied over the directory), damaged (checksums), stale beyond replay (its
//!   deletions were pruned) or inconsistent snapshot is discarded and the index is rebuilt
//!   from SQLite: never an error. Writing a snapshot prunes the deletion log up to what it covers
//!   (`pruned_seq`); a process whose index is older than that reloads instead of replaying.
//!
//! ## Concurrency
//!
//! One writer at a time across processes (SQLite's lock, taken with `BEGIN IMMEDIATE`; a
//! writer that waits longer than the busy timeout gets [`Error::Busy`], never a hang); any
//! number of readers (WAL: readers never wait for the writer). In a process, a [`Db`] holds one
//! connection for writes and one for reads, each behind a mutex; each collection's derived
//! state is behind a read-write lock (queries share it, writes and catch-ups take it alone).
//! Lock order: the open-collections map, then the writer connection, then a collection's
//! state, then the reader connection. A `Db` refuses calls from a forked child (SQLite
//! connections must not cross a fork): open the store again there.
//!
//! ## Cost
//!
//! A write costs one transaction (one fsync with `FULL`) plus the index insertion, the mirror's
//! (O(log values) per metadata field), and the FTS5 insertion of its documents (a changed or
//! deleted document is read back and tokenized again to take it out); a collection's open
//! costs one pass over its rows' ids and metadata (the mirror), plus reading the vectors
//! written after the snapshot; a rebuild adds every vector again (the FTS tables are never
//! rebuilt: they are in the same transactions).
//! Snapshots are written after `snapshot_every` changed rows, and no sooner than a quarter of
//! the collection has changed since the last one, so their total size written stays a small
//! multiple of the data (the sizes grow geometrically). The write that makes one due does not
//! wait for it: a background thread encodes the index under the collection's read lock
//! (queries go on; writes wait only for the encoding, a copy of the index in memory), then
//! writes and fsyncs the file and prunes the deletion log without any lock. One snapshot is
//! written at a time per collection (so an older one never replaces a newer one), and a
//! collection's last handle waits for its snapshot before it is dropped, and an HNSW
//! collection's last handle writes one as it closes when the rows changed since the last one
//! number at least 1,000 and 1/64 of the collection (replaying a row into the graph at the next
//! open costs about a hundred times what writing it does), so a collection below
//! `snapshot_every` does not rebuild its graph at every open. A query takes one
//! `data_version` read, the index search, and one SQLite read when documents are asked for; a
//! filter adds its evaluation on the mirror: O(records / 64) words per tree node plus one bit
//! per row its postings contribute (5–50 µs at 100k records, see `docs/benchmarks.md`),
//! instead of a visit of every record's metadata.
//!
//! Space is given back: deleted and replaced vectors leave the HNSW graph at its next
//! consolidation (past 10 % of it) and the flat index at once; the database is created with
//! `auto_vacuum=INCREMENTAL`, and a write that frees pages gives them back to the file system
//! when they pass 1 MB and an eighth of the file (`schema::reclaim_space`); the
//! write-ahead log is truncated to 64 MB after checkpoints.
//!
//! ## Filters
//!
//! `where` filters are parsed into a typed tree ([`predicate`]) and evaluated on the mirror
//! ([`mirror`]), a columnar copy of the records' metadata: per field, postings by value (an
//! inverted index for `$eq`/`$in`/`$contains`/`$exists`), a sorted column of the numbers for
//! ranges, and the strings in order for string ranges. The tree becomes set operations on
//! bitsets over the mirror's rows (`$ne`, `$nin`, `$not`: complements within the live
//! records), so the planner knows the exact number of matches before it chooses:
//!
//! - none: an empty answer;
//! - few ([`EXACT_SCAN_MAX`], or under [`EXACT_SCAN_SHARE`] of the collection): an exact
//!   scan of just those vectors;
//! - more: the index searches with them as its allowed set, built from their keys (a hash
//!   lookup each) or, from [`MASK_SHARE`] of the index on, from a mask by key (one pass over
//!   the index's slots, cheaper then); a query the graph could not fill (a filter that cut it
//!   apart) is answered by an exact scan of the matches.
//!
//! Either way a query returns exactly `min(k, matches)` results, and `count(where)` is a
//! popcount. [`mirror::RowMirror`], which evaluates [`Where::matches`] record by record, is
//! the definition the columnar mirror is tested against. `where_document` filters
//! ([`text::DocFilter`]: `$contains`, `$not_contains`, `$and`, `$or`) are evaluated on the
//! documents in SQLite, narrowed by FTS5 where a needle holds a whole word, and their keys
//! intersected with `where`'s, for every read and for `delete`.
//!
//! ## Text and hybrid search
//!
//! [`Collection::search`] ranks by vector distance (`QueryMode::Vector`), by BM25 of query
//! texts over the documents (`Text`: at most `k`, only records holding a query term), or by
//! reciprocal rank fusion of both (`Hybrid`: `min(k, matches)`); `where` and `where_document`
//! apply to every mode. The argument (table layout, query quoting, fusion depth) is the
//! module comment of [`text`].

mod collection;
pub mod meta;
pub mod mirror;
pub mod predicate;
mod schema;
pub mod text;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{Map, Value};

pub use collection::{
    Collection, Filters, Include, Query, QueryHits, QueryMode, Records, Write, CLOSE_SNAPSHOT_MIN,
};
pub use meta::{MetaValue, Metadata, Scalar};
pub use predicate::Where;
pub use text::DocFilter;

use crate::error::{Error, Result};

/// Below this many matching records a filtered query scans them exactly.
pub const EXACT_SCAN_MAX: usize = 2048;
/// ... and below this share of the collection.
pub const EXACT_SCAN_SHARE: f64 = 0.01;
/// From this share of the index's slots on, a filtered search's allowed set is built from a
/// mask by key (one pass over the slots) rather than a lookup per matching key.
pub const MASK_SHARE: f64 = 0.0625;
/// The database file inside a store's directory.
pub const DB_FILE: &str = "store.sqlite3";

/// When a commit is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced before the write returns.
    Full,
    /// `synchronous=NORMAL`: safe against a process crash; a power cut or OS crash may roll
    /// back the last transactions (those since the last WAL checkpoint).
    Normal,
}

impl Durability {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(Error::param("durability", "'full' or 'normal'", name)),
        }
    }
}

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct Options {
    pub durability: Durability,
    /// How long a writer waits for another process's write lock before [`Error::Busy`].
    pub timeout: Duration,
    /// Write a collection's snapshot after this many changed rows (0: only when asked).
    pub snapshot_every: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Full,
            timeout: Duration::from_secs(5),
            snapshot_every: 50_000,
        }
    }
}

/// What a new collection is, or what an existing one is expected to be (`None`: any).
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub dim: Option<usize>,
    pub metric: Option<String>,
    /// `"flat"` or `"hnsw"`.
    pub index: Option<String>,
    /// The index's parameters (HNSW: `m`, `ef_construction`, `ef_search`, `codes`, `seed`),
    /// and `embedder`: the name of the embedder that makes the vectors from text, if any.
    pub params: Option<Map<String, Value>>,
}

/// A collection as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionInfo {
    pub id: i64,
    pub name: String,
    pub dim: usize,
    pub metric: String,
    pub index: String,
    pub params: Map<String, Value>,
    pub created: String,
}

/// An open store. See the module comment.
pub struct Db {
    shared: Arc<Shared>,
    /// Collections opened through this store, by name: one derived index per collection.
    open: Mutex<HashMap<String, Arc<Collection>>>,
}

/// What a store and its collections share.
pub(crate) struct Shared {
    dir: PathBuf,
    opts: Options,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    pid: u32,
}

impl Shared {
    /// Refuses calls from a forked child.
    fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::param(
                "store",
                "a store opened in this process (SQLite connections cannot cross a fork)",
                "a store opened before os.fork(): open it again in the child",
            ));
        }
        Ok(())
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        self.check_process()?;
        lock(&self.writer)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        self.check_process()?;
        lock(&self.reader)
    }

    fn snapshot_path(&self, name: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{name}.{kind}.knn"))
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Internal("a store lock was poisoned by an earlier failure".into()))
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, DatabaseBusy | DatabaseLocked) =>
            {
                Error::Busy(format!(
                    "another connection holds the store's write lock and did not release it \
                     within the busy timeout ({e}); retry, or open the store with a longer timeout"
                ))
            }
            _ => Error::Database(e.to_string()),
        }
    }
}

impl From<rusqlite::types::FromSqlError> for Error {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Error::Database(format!("a stored value has the wrong type: {e}"))
    }
}

impl Db {
    /// Opens the store in `dir` (created if missing).
    pub fn open(dir: &Path, opts: Options) -> Result<Db> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        let path = dir.join(DB_FILE);
        let mut writer = schema::connect(&path, &opts)?;
        schema::init(&mut writer)?;
        let reader = schema::connect(&path, &opts)?;
        Ok(Db {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                opts,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                pid: std::process::id(),
            }),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// Creates a collection; an existing name is an error.
    pub fn create_collection(&self, name: &str, spec: &Spec) -> Result<Arc<Collection>> {
        let mut open = lock(&self.open)?;
        let info = {
            let mut conn = self.shared.writer()?;
            let tx = schema::begin_write(&mut conn)?;
            if schema::collection(&tx, name)?.is_some() {
                return Err(Error::param(
                    "name",
                    "a name no collection has (use get_or_create_collection to reuse it)",
                    format!("{name:?}, which exists"),
                ));
            }
            let info = schema::insert_collection(&tx, name, spec)?;
            tx.commit()?;
            info
        };
        self.open_collection(&mut open, info)
    }

    /// The collection called `name`; it must exist, and match what `spec` names.
    pub fn get_collection(&self, name: &str, spec: &Spec) -> Result<Arc<Collection>> {
        let mut open = lock(&self.open)?;
        let info = {
            let conn = self.shared.reader()?;
            schema::collection(&conn, name)?
        };
        let info = info.ok_or_else(|| {
            Error::param(
                "name",
                "the name of an existing collection",
                format!("{name:?}, which does not exist"),
            )
        })?;
        schema::check_matches(&info, spec)?;
        self.open_collection(&mut open, info)
    }

    /// The collection called `name`, created from `spec` if missing (an existing one must
    /// match what `spec` names). An existing collection is looked up without the write lock,
    /// so a reader process is not held up by another process's writes.
    pub fn get_or_create_collection(&self, name: &str, spec: &Spec) -> Result<Arc<Collection>> {
        let mut open = lock(&self.open)?;
        let existing = {
            let conn = self.shared.reader()?;
            schema::collection(&conn, name)?
        };
        if let Some(info) = existing {
            schema::check_matches(&info, spec)?;
            return self.open_collection(&mut open, info);
        }
        let info = {
            let mut conn = self.shared.writer()?;
            let tx = schema::begin_write(&mut conn)?;
            let info = match schema::collection(&tx, name)? {
                Some(info) => {
                    schema::check_matches(&info, spec)?;
                    info
                }
                None => schema::insert_collection(&tx, name, spec)?,
            };
            tx.commit()?;
            info
        };
        self.open_collection(&mut open, info)
    }

    fn open_collection(
        &self,
        open: &mut HashMap<String, Arc<Collection>>,
        info: CollectionInfo,
    ) -> Result<Arc<Collection>> {
        if let Some(c) = open.get(&info.name) {
            if c.info().id == info.id && !c.is_dropped() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Collection::open(self.shared.clone(), info)?);
        open.insert(c.info().name.clone(), c.clone());
        Ok(c)
    }

    /// Every collection, by name.
    pub fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let conn = self.shared.reader()?;
        schema::collections(&conn)
    }

    /// Deletes a collection, its records and its snapshot.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let mut open = lock(&self.open)?;
        let info = {
            let mut conn = self.shared.writer()?;
            let tx = schema::begin_write(&mut conn)?;
            let info = schema::collection(&tx, name)?.ok_or_else(|| {
                Error::param(
                    "name",
                    "the name of an existing collection",
                    format!("{name:?}, which does not exist"),
                )
            })?;
            schema::delete_collection(&tx, info.id)?;
            tx.commit()?;
            info
        };
        if let Some(c) = open.remove(name) {
            c.mark_dropped();
        }
        let snap = self.shared.snapshot_path(name, &info.index);
        match std::fs::remove_file(&snap) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&snap, &e)),
        }
        Ok(())
    }

    /// Copies the database into the directory `dest` (created if missing; it must not hold a
    /// store) with SQLite's online backup: a consistent copy while writers run. Indexes are
    /// not copied: the copy rebuilds them when opened.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, &e))?;
        let target = dest.join(DB_FILE);
        if target.exists() {
            return Err(Error::param(
                "path",
                "a directory without a store",
                format!("{}, which holds one", dest.display()),
            ));
        }
        let conn = self.shared.reader()?;
        let mut out = Connection::open(&target)?;
        {
            let backup = rusqlite::backup::Backup::new(&conn, &mut out)?;
            // One step copies every page under one read transaction: a consistent copy that
            // concurrent writers (WAL) neither block nor restart.
            let deadline = std::time::Instant::now() + self.shared.opts.timeout;
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if std::time::Instant::now() >= deadline => {
                        return Err(Error::Busy(
                            "the backup could not read the store within the busy timeout".into(),
                        ))
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        // The copy starts a history of its own (see `schema::new_epoch`).
        out.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'epoch'",
            [schema::new_epoch()],
        )?;
        out.close().map_err(|(_, e)| Error::from(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
