//! A collection: its rows in SQLite and its derived state in memory (the index and the
//! mirror), kept in step as the module comment of [`super`] describes.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, Transaction};
use serde_json::{Map, Value};

use super::meta::Metadata;
use super::mirror::{ColumnMirror, Mirror};
use super::predicate::Where;
use super::schema;
use super::text::{self, DocFilter};
use super::{CollectionInfo, Shared, EXACT_SCAN_MAX, EXACT_SCAN_SHARE, MASK_SHARE};
use crate::error::{Error, Result};
use crate::filter::Allowed;
use crate::flat::index::FlatIndex;
use crate::flat::{knn, Base, SearchParams};
use crate::hnsw::{Codes, Hnsw, HnswParams};
use crate::index::{self, Filter, Index, SearchOptions};
use crate::io::IndexFile;
use crate::metric::Metric;
use crate::pool::resolve_threads;
use crate::validate::check_searchable;

/// Rows added to an index per call while loading.
const LOAD_BATCH: usize = 8192;

/// One write call's records: `ids[i]` with row `i` of `vectors` (`dim` values each),
/// `metadata[i]` and `documents[i]`. A field that is `None` is not written (kept for existing
/// records, empty for new ones); `Some(None)` entries clear it.
#[derive(Clone, Debug, Default)]
pub struct Write {
    pub ids: Vec<String>,
    pub vectors: Option<Vec<f32>>,
    pub metadata: Option<Vec<Option<Metadata>>>,
    pub documents: Option<Vec<Option<String>>>,
}

/// Which fields reads return.
#[derive(Clone, Copy, Debug, Default)]
pub struct Include {
    pub metadata: bool,
    pub documents: bool,
    pub vectors: bool,
}

/// Records read by [`Collection::get`]: parallel lists (fields not included stay empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    pub ids: Vec<String>,
    pub metadata: Vec<Option<Metadata>>,
    pub documents: Vec<Option<String>>,
    /// Row-major, `dim` values per record.
    pub vectors: Vec<f32>,
}

/// The results of one query, best first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryHits {
    pub ids: Vec<String>,
    /// Vector mode: the distance of each hit (empty in the other modes).
    pub distances: Vec<f32>,
    /// Text mode: each hit's BM25 score; hybrid mode: its reciprocal rank fusion score
    /// (higher is better; empty in vector mode).
    pub scores: Vec<f64>,
    pub metadata: Vec<Option<Metadata>>,
    pub documents: Vec<Option<String>>,
}

impl Drop for Collection {
    /// A collection's last handle waits for its background snapshot (a store closed and its
    /// directory removed never sees a snapshot file appear afterwards), then writes one if the
    /// next open would otherwise spend much longer rebuilding than this costs (see
    /// [`snapshot_on_close`]). Best effort: the writes are committed either way.
    fn drop(&mut self) {
        self.wait_for_snapshot();
        let due = self.state.read().is_ok_and(|live| {
            !live.dropped
                && !live.reload
                && snapshot_on_close(&self.info.index, live.since_snapshot, live.mirror.len())
        });
        if due {
            let _ = write_snapshot(&self.db, &self.info, &self.state, &self.snapshot_lock);
        }
    }
}

/// Rows changed since the last snapshot from which a closing HNSW collection writes one.
pub const CLOSE_SNAPSHOT_MIN: usize = 1_000;

/// Whether a collection's last handle writes a snapshot as it closes: HNSW collections whose
/// rows changed since the last snapshot number at least [`CLOSE_SNAPSHOT_MIN`] and 1/64 of the
/// collection. Replaying a row into the graph at the next open costs about a hundred times what
/// writing it in a snapshot does (≈ 300 µs against ≈ 3 µs for a 384-d row on 2 vCPUs), so a
/// collection below `snapshot_every` no longer rebuilds its graph at every open, and a close
/// after a few writes to a large collection does not rewrite it. Flat indexes replay a row by
/// reading its vector, about what a snapshot costs: they keep the write-count rule alone.
fn snapshot_on_close(kind: &str, changed: usize, len: usize) -> bool {
    kind == "hnsw" && changed >= CLOSE_SNAPSHOT_MIN.max(len / 64)
}

/// Which records a call is about: those both filters match (`None`: no condition).
#[derive(Clone, Copy, Debug, Default)]
pub struct Filters<'a> {
    /// `where`, on metadata.
    pub meta: Option<&'a Where>,
    /// `where_document`, on documents.
    pub document: Option<&'a DocFilter>,
}

impl<'a> Filters<'a> {
    /// A `where` filter alone.
    pub fn meta(meta: Option<&'a Where>) -> Self {
        Filters {
            meta,
            document: None,
        }
    }

    fn is_some(&self) -> bool {
        self.meta.is_some() || self.document.is_some()
    }
}

/// How a query ranks records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueryMode {
    /// By distance to query vectors.
    #[default]
    Vector,
    /// By BM25 of query texts over documents.
    Text,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl QueryMode {
    pub fn parse(name: &str) -> Result<QueryMode> {
        match name {
            "vector" => Ok(QueryMode::Vector),
            "text" => Ok(QueryMode::Text),
            "hybrid" => Ok(QueryMode::Hybrid),
            _ => Err(Error::param(
                "mode",
                "'vector', 'text' or 'hybrid'",
                format!("{name:?}"),
            )),
        }
    }
}

/// A query (see [`Collection::search`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<'a> {
    pub mode: QueryMode,
    /// Row-major query vectors (vector and hybrid modes).
    pub vectors: Option<&'a [f32]>,
    /// Query texts (text and hybrid modes): one per result row.
    pub texts: Option<&'a [String]>,
    pub k: usize,
    pub filters: Filters<'a>,
    pub include: Include,
}

/// The derived state of a collection.
struct Live {
    index: Box<dyn Index>,
    mirror: Box<dyn Mirror>,
    /// The sequence number everything up to which is applied.
    applied: i64,
    /// The reader connection's `data_version` when last caught up.
    data_version: Option<i64>,
    /// Applying a committed write failed: reload before the next use.
    reload: bool,
    /// The collection was deleted.
    dropped: bool,
    /// Rows changed since the last snapshot.
    since_snapshot: usize,
    /// The index was loaded from a snapshot (not rebuilt from SQLite) at the last load.
    from_snapshot: bool,
}

/// A collection of a store. See the module comment of [`super`].
pub struct Collection {
    db: Arc<Shared>,
    info: CollectionInfo,
    metric: Metric,
    state: Arc<RwLock<Live>>,
    /// Held while a snapshot is encoded and written: one at a time per collection, so an
    /// older snapshot never replaces a newer one.
    snapshot_lock: Arc<Mutex<()>>,
    /// The background snapshot started by a write, if any.
    pending: Mutex<Option<JoinHandle<()>>>,
}

/// What a committed write changes in the derived state.
#[derive(Default)]
struct Change {
    /// Keys that left the index.
    removed: Vec<i64>,
    /// Records written: key, str id, metadata.
    rows: Vec<(i64, String, Option<Metadata>)>,
    /// New keys and their vectors (row-major).
    new_keys: Vec<i64>,
    new_vectors: Vec<f32>,
}

impl Change {
    fn size(&self) -> usize {
        self.removed.len().max(self.rows.len())
    }
}

/// Row `q` of a `k`-wide result, without its missing places.
fn found(ids: &[i64], distances: &[f32], q: usize, k: usize) -> (Vec<i64>, Vec<f32>) {
    let row = q * k..(q + 1) * k;
    ids[row.clone()]
        .iter()
        .zip(&distances[row])
        .filter(|(&i, _)| i >= 0)
        .map(|(&i, &d)| (i, d))
        .unzip()
}

/// An empty index of a collection's kind.
pub(super) fn new_index(info: &CollectionInfo) -> Result<Box<dyn Index>> {
    let metric = Metric::parse(&info.metric, 2.0)?;
    match info.index.as_str() {
        // As `FlatIndex`'s default: a bf16 copy beside the float32 rows where the metric is
        // dot-based, which single queries stream instead of the rows (half the bytes; the
        // candidates are re-scored in float32, so results are the float32 answer).
        "flat" => {
            let bf16 = metric.is_dot_based();
            Ok(Box::new(FlatIndex::<f32>::new(info.dim, metric, bf16)?))
        }
        "hnsw" => {
            let p = &info.params;
            let int = |k: &'static str| -> Result<u64> {
                p.get(k)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::param("params", format!("{k} as an int"), "none"))
            };
            let codes = p.get("codes").and_then(Value::as_str).unwrap_or("");
            let codes = Codes::from_name(codes).ok_or_else(|| {
                Error::param(
                    "params",
                    "codes as 'flat', 'sq8' or 'sq4'",
                    format!("{codes:?}"),
                )
            })?;
            let size =
                |k| usize::try_from(int(k)?).map_err(|_| Error::param("params", "a size", k));
            size("ef_search")?;
            let params = HnswParams {
                m: size("m")?,
                ef_construction: size("ef_construction")?,
                seed: int("seed")?,
                codes,
            };
            Ok(Box::new(Hnsw::new(info.dim, metric, params)?))
        }
        other => Err(Error::param(
            "index",
            "'hnsw' or 'flat'",
            format!("{other:?}"),
        )),
    }
}

/// The index's allowed set for a filter's matching keys (ascending): from the keys when they
/// are few, from a mask by key when they are at least [`MASK_SHARE`] of the index's slots (one
/// pass over the slots, cheaper then than a hash lookup per match) and dense enough for a mask.
fn allowed(index: &dyn Index, keys: &[i64]) -> Allowed {
    let slots = index.id_map().len();
    let end = keys
        .last()
        .and_then(|&k| usize::try_from(k).ok())
        .map(|k| k + 1);
    match end {
        Some(end)
            if keys.len() as f64 >= MASK_SHARE * slots as f64
                && end <= slots.max(1024).saturating_mul(8) =>
        {
            let mut mask = vec![false; end];
            for &k in keys {
                if let Some(m) = usize::try_from(k).ok().and_then(|k| mask.get_mut(k)) {
                    *m = true;
                }
            }
            index.allowed(Filter::Mask(&mask))
        }
        _ => index.allowed(Filter::Ids(keys)),
    }
}

/// Adds rows to an index (nothing for none), on every core.
fn add(index: &mut dyn Index, vectors: &[f32], keys: &[i64]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    index.add(vectors, keys, resolve_threads(None))
}

fn rarray<T: Into<SqlValue>>(items: impl IntoIterator<Item = T>) -> Rc<Vec<SqlValue>> {
    Rc::new(items.into_iter().map(Into::into).collect())
}

fn vector_blob(row: &[f32]) -> Vec<u8> {
    row.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn push_vector(out: &mut Vec<f32>, blob: &[u8], dim: usize, what: &str) -> Result<()> {
    if blob.len() != dim * 4 {
        return Err(Error::Database(format!(
            "{what}: a stored vector has {} bytes, the collection's dimension needs {}",
            blob.len(),
            dim * 4
        )));
    }
    out.extend(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(())
}

fn parse_meta(text: Option<String>, what: &str) -> Result<Option<Metadata>> {
    text.map(|t| Metadata::parse_stored(&t, what)).transpose()
}

fn meta_text(m: &Option<Metadata>) -> Option<String> {
    m.as_ref().map(|m| m.to_json().to_string())
}

impl Live {
    fn empty(info: &CollectionInfo) -> Result<Live> {
        Ok(Live {
            index: new_index(info)?,
            mirror: Box::new(ColumnMirror::new()),
            applied: 0,
            data_version: None,
            reload: false,
            dropped: false,
            since_snapshot: 0,
            from_snapshot: false,
        })
    }

    /// Loads a collection's state as of the database's current sequence number: from its
    /// snapshot plus what came after, or, when the snapshot cannot serve, from SQLite alone.
    /// `conn` is inside a transaction.
    fn load(conn: &Connection, info: &CollectionInfo, snapshot: &Path) -> Result<Live> {
        let seq = schema::current_seq(conn)?;
        if let Some((index, covers)) = open_snapshot(conn, info, snapshot, seq)? {
            let mut live = Live::empty(info)?;
            live.index = index;
            live.since_snapshot = 0;
            // Any failure here (a damaged snapshot that still parsed) falls back to a rebuild;
            // a database error fails the rebuild too, and is reported from there.
            live.from_snapshot = true;
            if live.replay_onto_snapshot(conn, info, covers, seq).is_ok() {
                return Ok(live);
            }
        }
        let mut live = Live::empty(info)?;
        live.rebuild(conn, info, seq)?;
        Ok(live)
    }

    /// Every row of the collection into a new index and mirror.
    fn rebuild(&mut self, conn: &Connection, info: &CollectionInfo, seq: i64) -> Result<()> {
        let mut stmt = conn.prepare(
            "SELECT key, id, metadata, vector FROM records WHERE collection = ?1 ORDER BY key",
        )?;
        let mut rows = stmt.query([info.id])?;
        let (mut keys, mut vectors, mut records) = (Vec::new(), Vec::new(), Vec::new());
        let mut n = 0usize;
        while let Some(r) = rows.next()? {
            let key: i64 = r.get(0)?;
            let id: String = r.get(1)?;
            let meta = parse_meta(r.get(2)?, &id)?;
            push_vector(&mut vectors, r.get_ref(3)?.as_blob()?, info.dim, &id)?;
            records.push((key, id, meta));
            keys.push(key);
            if keys.len() == LOAD_BATCH {
                add(&mut *self.index, &vectors, &keys)?;
                n += keys.len();
                keys.clear();
                vectors.clear();
            }
        }
        add(&mut *self.index, &vectors, &keys)?;
        n += keys.len();
        self.mirror.extend(records);
        self.applied = seq;
        self.since_snapshot = n;
        self.reload = false;
        Ok(())
    }

    /// Brings a snapshot covering `covers` up to `seq` and checks it holds exactly SQLite's
    /// keys.
    fn replay_onto_snapshot(
        &mut self,
        conn: &Connection,
        info: &CollectionInfo,
        covers: i64,
        seq: i64,
    ) -> Result<()> {
        self.remove_logged(conn, info, covers, seq)?;
        let mut stmt = conn.prepare(
            "SELECT key, id, metadata, CASE WHEN seq > ?2 THEN vector END
             FROM records WHERE collection = ?1",
        )?;
        let mut rows = stmt.query(params![info.id, covers])?;
        let (mut keys, mut vectors, mut records) = (Vec::new(), Vec::new(), Vec::new());
        let mut all_present = true;
        let mut changed = 0usize;
        while let Some(r) = rows.next()? {
            let key: i64 = r.get(0)?;
            let id: String = r.get(1)?;
            let meta = parse_meta(r.get(2)?, &id)?;
            let blob = r.get_ref(3)?;
            if !self.index.contains(key) {
                match blob.as_blob_or_null()? {
                    Some(b) => {
                        push_vector(&mut vectors, b, info.dim, &id)?;
                        keys.push(key);
                    }
                    None => all_present = false,
                }
            }
            if blob.as_blob_or_null()?.is_some() {
                changed += 1;
            }
            records.push((key, id, meta));
        }
        self.mirror.extend(records);
        if !all_present {
            return Err(Error::Corrupt(
                "the snapshot lacks records it claims to cover".into(),
            ));
        }
        add(&mut *self.index, &vectors, &keys)?;
        if self.index.len() != self.mirror.len() {
            return Err(Error::Corrupt(format!(
                "the snapshot holds {} vectors after replay, the database {} records",
                self.index.len(),
                self.mirror.len()
            )));
        }
        self.applied = seq;
        self.since_snapshot = changed;
        Ok(())
    }

    /// Removes the keys the deletion log holds in `(after, to]`.
    fn remove_logged(
        &mut self,
        conn: &Connection,
        info: &CollectionInfo,
        after: i64,
        to: i64,
    ) -> Result<usize> {
        let mut stmt = conn.prepare_cached(
            "SELECT key FROM deletions WHERE collection = ?1 AND seq > ?2 AND seq <= ?3",
        )?;
        let keys: Vec<i64> = stmt
            .query_map(params![info.id, after, to], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for &k in &keys {
            self.mirror.remove(k);
        }
        self.index.remove(&keys);
        Ok(keys.len())
    }

    /// Applies the rows and deletions after `self.applied` up to `to` (`conn` inside a
    /// transaction that sees `to`).
    fn catch_up(&mut self, conn: &Connection, info: &CollectionInfo, to: i64) -> Result<()> {
        if to <= self.applied {
            return Ok(());
        }
        let removed = self.remove_logged(conn, info, self.applied, to)?;
        let mut stmt = conn.prepare_cached(
            "SELECT key, id, metadata, vector FROM records
             WHERE collection = ?1 AND seq > ?2 AND seq <= ?3",
        )?;
        let mut rows = stmt.query(params![info.id, self.applied, to])?;
        let (mut keys, mut vectors, mut records) = (Vec::new(), Vec::new(), Vec::new());
        let mut changed = removed;
        while let Some(r) = rows.next()? {
            let key: i64 = r.get(0)?;
            let id: String = r.get(1)?;
            let meta = parse_meta(r.get(2)?, &id)?;
            if !self.index.contains(key) {
                push_vector(&mut vectors, r.get_ref(3)?.as_blob()?, info.dim, &id)?;
                keys.push(key);
            }
            records.push((key, id, meta));
            changed += 1;
        }
        self.mirror.extend(records);
        add(&mut *self.index, &vectors, &keys)?;
        self.applied = to;
        self.since_snapshot += changed;
        Ok(())
    }

    /// Applies a committed write.
    fn apply(&mut self, change: Change, seq: i64) -> Result<()> {
        for &k in &change.removed {
            self.mirror.remove(k);
        }
        self.index.remove(&change.removed);
        let size = change.size();
        self.mirror.extend(change.rows);
        self.applied = seq;
        self.since_snapshot += size;
        add(&mut *self.index, &change.new_vectors, &change.new_keys)
    }
}

/// The snapshot's index and the sequence number it covers, when it can serve this collection
/// now; `None` when it is missing, damaged, foreign or too old to replay.
fn open_snapshot(
    conn: &Connection,
    info: &CollectionInfo,
    path: &Path,
    seq: i64,
) -> Result<Option<(Box<dyn Index>, i64)>> {
    let Ok(file) = IndexFile::open(path, true) else {
        return Ok(None);
    };
    let h = file.header();
    let covers = h.get("covers_seq").and_then(Value::as_i64);
    let owner = h.get("collection_id").and_then(Value::as_i64);
    let epoch = h.get("store_epoch").and_then(Value::as_i64);
    let ours = owner == Some(info.id) && epoch == Some(schema::epoch(conn)?);
    let pruned = schema::pruned_seq(conn, info.id)?;
    let Some(covers) = covers.filter(|&c| ours && c <= seq && c >= pruned) else {
        return Ok(None);
    };
    let Ok(index) = index::from_file(&file) else {
        return Ok(None);
    };
    let fits = index.kind() == info.index
        && index.dim() == info.dim
        && index.metric().name() == info.metric;
    Ok(fits.then_some((index, covers)))
}

/// Checks a write's fields before any database work.
fn check_write(w: &Write, dim: usize, need_vectors: bool) -> Result<()> {
    let n = w.ids.len();
    if n == 0 {
        return Err(Error::param("ids", "at least one id", "none"));
    }
    let mut seen = std::collections::HashSet::with_capacity(n);
    for id in &w.ids {
        if id.is_empty() {
            return Err(Error::param("ids", "non-empty strings", "an empty string"));
        }
        if !seen.insert(id.as_str()) {
            return Err(Error::param(
                "ids",
                "ids that are unique within one call",
                format!("{id:?} more than once"),
            ));
        }
    }
    match &w.vectors {
        None if need_vectors => {
            return Err(Error::param(
                "vectors",
                "one vector per id (embedding documents arrives with a later version)",
                "none",
            ))
        }
        None => {}
        Some(v) => {
            if v.len() != n * dim {
                if v.len() % dim != 0 {
                    return Err(Error::DimensionMismatch {
                        expected: dim,
                        got: v.len() % dim,
                    });
                }
                return Err(Error::Shape {
                    name: "vectors",
                    expected: n,
                    got: v.len() / dim,
                });
            }
            check_searchable(v, dim, "vectors")?;
        }
    }
    if let Some(m) = &w.metadata {
        if m.len() != n {
            return Err(Error::Shape {
                name: "metadata",
                expected: n,
                got: m.len(),
            });
        }
    }
    if let Some(d) = &w.documents {
        if d.len() != n {
            return Err(Error::Shape {
                name: "documents",
                expected: n,
                got: d.len(),
            });
        }
    }
    Ok(())
}

/// How a write treats ids that exist and ids that do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// New ids only.
    Add,
    /// New ids are added, existing ones updated.
    Upsert,
    /// Existing ids only.
    Update,
}

fn some_ids(ids: &[&str]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(|i| format!("{i:?}")).collect();
    let more = if ids.len() > 5 {
        format!(" and {} more", ids.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

impl Collection {
    /// Opens a collection: loads its derived state (see [`Live::load`]).
    pub(super) fn open(db: Arc<Shared>, info: CollectionInfo) -> Result<Collection> {
        let metric = Metric::parse(&info.metric, 2.0)?;
        let path = db.snapshot_path(&info.name, &info.index);
        let live = {
            let mut conn = db.reader()?;
            let dv = schema::data_version(&conn)?;
            let tx = conn.transaction()?;
            let mut live = Live::load(&tx, &info, &path)?;
            tx.commit()?;
            live.data_version = Some(dv);
            live
        };
        Ok(Collection {
            db,
            info,
            metric,
            state: Arc::new(RwLock::new(live)),
            snapshot_lock: Arc::new(Mutex::new(())),
            pending: Mutex::new(None),
        })
    }

    /// What the collection is.
    pub fn info(&self) -> &CollectionInfo {
        &self.info
    }

    pub(super) fn is_dropped(&self) -> bool {
        self.state.read().map_or(true, |s| s.dropped)
    }

    pub(super) fn mark_dropped(&self) {
        if let Ok(mut s) = self.state.write() {
            s.dropped = true;
        }
    }

    fn read_state(&self) -> Result<RwLockReadGuard<'_, Live>> {
        self.state
            .read()
            .map_err(|_| Error::Internal("a collection lock was poisoned".into()))
    }

    fn write_state(&self) -> Result<RwLockWriteGuard<'_, Live>> {
        self.state
            .write()
            .map_err(|_| Error::Internal("a collection lock was poisoned".into()))
    }

    fn dropped_error(&self) -> Error {
        Error::param(
            "collection",
            "an existing collection",
            format!("{:?}, which was deleted", self.info.name),
        )
    }

    /// The derived state, caught up with every commit (this process's and others').
    fn synced(&self) -> Result<RwLockReadGuard<'_, Live>> {
        {
            let live = self.read_state()?;
            if live.dropped {
                return Err(self.dropped_error());
            }
            let dv = schema::data_version(&*self.db.reader()?)?;
            if Some(dv) == live.data_version && !live.reload {
                return Ok(live);
            }
        }
        {
            let mut live = self.write_state()?;
            let mut conn = self.db.reader()?;
            let dv = schema::data_version(&conn)?;
            let tx = conn.transaction()?;
            self.refresh(&tx, &mut live)?;
            tx.commit()?;
            live.data_version = Some(dv);
        }
        let live = self.read_state()?;
        if live.dropped {
            return Err(self.dropped_error());
        }
        Ok(live)
    }

    /// Brings `live` up to the database `conn` sees (inside a transaction): replays, or
    /// reloads when replay cannot serve (a failed apply, a pruned deletion log).
    fn refresh(&self, conn: &Connection, live: &mut Live) -> Result<()> {
        if live.dropped || !schema::collection_exists(conn, self.info.id)? {
            live.dropped = true;
            return Err(self.dropped_error());
        }
        let seq = schema::current_seq(conn)?;
        if live.reload || schema::pruned_seq(conn, self.info.id)? > live.applied {
            let path = self.snapshot_path();
            *live = Live::load(conn, &self.info, &path)?;
            return Ok(());
        }
        if let Err(e) = live.catch_up(conn, &self.info, seq) {
            live.reload = true;
            return Err(e);
        }
        Ok(())
    }

    fn snapshot_path(&self) -> std::path::PathBuf {
        self.db.snapshot_path(&self.info.name, &self.info.index)
    }

    /// Runs one write transaction: `f` checks and writes the rows and says what changed;
    /// commits, then applies the change to the derived state. Returns `f`'s count.
    fn write(
        &self,
        f: impl FnOnce(&Transaction<'_>, &Live, i64) -> Result<(Change, usize)>,
    ) -> Result<usize> {
        let (count, snapshot_due) = {
            let mut conn = self.db.writer()?;
            let tx = schema::begin_write(&mut conn)?;
            let mut live = self.write_state()?;
            self.refresh(&tx, &mut live)?;
            let seq = schema::next_seq(&tx)?;
            let (change, count) = f(&tx, &live, seq)?;
            if change.size() == 0 {
                // Nothing to write: end the transaction without taking a sequence number.
                drop(tx);
                return Ok(count);
            }
            let freed = !change.removed.is_empty();
            tx.commit()?;
            if live.apply(change, seq).is_err() {
                // Committed and durable: the index is rebuilt from SQLite on the next call.
                live.reload = true;
            }
            if freed {
                // Best effort, like the snapshot: the write is committed.
                let _ = schema::reclaim_space(&conn);
            }
            let every = self.db.opts.snapshot_every;
            let due = every > 0 && live.since_snapshot >= every.max(live.mirror.len() / 4);
            if due {
                // Counted as taken now, so the writes that follow do not start another.
                live.since_snapshot = 0;
            }
            (count, due)
        };
        if snapshot_due {
            self.snapshot_in_background();
        }
        Ok(count)
    }

    /// Adds records; every id must be new (none exists, none repeats).
    pub fn add(&self, w: &Write) -> Result<usize> {
        check_write(w, self.info.dim, true)?;
        self.write(|tx, live, seq| self.write_rows(tx, live, seq, w, Mode::Add))
    }

    /// Adds new records and replaces the given fields of existing ones.
    pub fn upsert(&self, w: &Write) -> Result<usize> {
        check_write(w, self.info.dim, true)?;
        self.write(|tx, live, seq| self.write_rows(tx, live, seq, w, Mode::Upsert))
    }

    /// Replaces the given fields (vectors, metadata, documents) of existing records; every id
    /// must exist.
    pub fn update(&self, w: &Write) -> Result<usize> {
        check_write(w, self.info.dim, false)?;
        self.write(|tx, live, seq| self.write_rows(tx, live, seq, w, Mode::Update))
    }

    fn write_rows(
        &self,
        tx: &Transaction<'_>,
        live: &Live,
        seq: i64,
        w: &Write,
        mode: Mode,
    ) -> Result<(Change, usize)> {
        let dim = self.info.dim;
        let existing = self.existing_keys(tx, &w.ids)?;
        if mode == Mode::Add && !existing.is_empty() {
            let ids: Vec<&str> = w
                .ids
                .iter()
                .filter(|i| existing.contains_key(i.as_str()))
                .map(String::as_str)
                .collect();
            return Err(Error::param(
                "ids",
                "ids not yet in the collection (use upsert or update to change records)",
                format!("existing ids {}", some_ids(&ids)),
            ));
        }
        if mode == Mode::Update && existing.len() != w.ids.len() {
            let ids: Vec<&str> = w
                .ids
                .iter()
                .filter(|i| !existing.contains_key(i.as_str()))
                .map(String::as_str)
                .collect();
            return Err(Error::param(
                "ids",
                "ids of records in the collection (use add or upsert for new ones)",
                format!("unknown ids {}", some_ids(&ids)),
            ));
        }
        let n_new_keys = match &w.vectors {
            Some(_) => w.ids.len(),
            None => 0,
        };
        let first_key = schema::take_keys(tx, self.info.id, n_new_keys)?;
        let mut change = Change::default();
        let mut insert = tx.prepare_cached(
            "INSERT INTO records (collection, id, key, seq, vector, metadata, document)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        // Fields not given keep their value.
        let mut update = tx.prepare_cached(
            "UPDATE records SET key = ?3, seq = ?4, vector = coalesce(?5, vector),
                 metadata = CASE WHEN ?6 THEN ?7 ELSE metadata END,
                 document = CASE WHEN ?8 THEN ?9 ELSE document END
             WHERE collection = ?1 AND id = ?2",
        )?;
        let mut log =
            tx.prepare_cached("INSERT INTO deletions (collection, seq, key) VALUES (?1, ?2, ?3)")?;
        for (i, id) in w.ids.iter().enumerate() {
            let vector = w.vectors.as_ref().map(|v| &v[i * dim..(i + 1) * dim]);
            let meta = w.metadata.as_ref().map(|m| &m[i]);
            let doc = w.documents.as_ref().map(|d| &d[i]);
            let key = vector.map(|_| first_key + i as i64);
            match existing.get(id.as_str()) {
                None => {
                    // Add or upsert of a new id: vectors are present (checked).
                    let (Some(key), Some(vector)) = (key, vector) else {
                        return Err(Error::Internal("a new record without a vector".into()));
                    };
                    let meta = meta.cloned().flatten();
                    insert.execute(params![
                        self.info.id,
                        id,
                        key,
                        seq,
                        vector_blob(vector),
                        meta_text(&meta),
                        doc.cloned().flatten(),
                    ])?;
                    if let Some(Some(d)) = doc {
                        text::insert(tx, self.info.id, key, d)?;
                    }
                    change.rows.push((key, id.clone(), meta));
                    change.new_keys.push(key);
                    change.new_vectors.extend_from_slice(vector);
                }
                Some(&old) => {
                    let new_key = key.unwrap_or(old);
                    let meta = match meta {
                        Some(m) => m.clone(),
                        None => live.mirror.metadata(old).cloned(),
                    };
                    // The full-text row follows the key and the document.
                    let moves = vector.is_some() || doc.is_some();
                    let old_doc = match moves {
                        true => text::stored(tx, self.info.id, old)?,
                        false => None,
                    };
                    update.execute(params![
                        self.info.id,
                        id,
                        new_key,
                        seq,
                        vector.map(vector_blob),
                        w.metadata.is_some(),
                        meta_text(&meta),
                        doc.is_some(),
                        doc.cloned().flatten(),
                    ])?;
                    if moves {
                        let new_doc = doc.map_or(old_doc.as_deref(), |d| d.as_deref());
                        let old = (old, old_doc.as_deref());
                        text::replace(tx, self.info.id, old, (new_key, new_doc))?;
                    }
                    if let Some(v) = vector {
                        log.execute(params![self.info.id, seq, old])?;
                        change.removed.push(old);
                        change.new_keys.push(new_key);
                        change.new_vectors.extend_from_slice(v);
                    }
                    change.rows.push((new_key, id.clone(), meta));
                }
            }
        }
        let n = change.rows.len();
        Ok((change, n))
    }

    /// The keys of those of `ids` that exist.
    fn existing_keys(
        &self,
        conn: &Connection,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, key FROM records WHERE collection = ?1 AND id IN rarray(?2)",
        )?;
        let rows = stmt.query_map(params![self.info.id, rarray(ids.iter().cloned())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes the records with these ids (unknown ones are skipped) that `filter` matches;
    /// at least one of the two must be given. Returns how many were deleted.
    pub fn delete(&self, ids: Option<&[String]>, filter: Option<&Where>) -> Result<usize> {
        self.delete_matching(ids, Filters::meta(filter))
    }

    /// [`Collection::delete`] with a `where_document` filter too.
    pub fn delete_matching(&self, ids: Option<&[String]>, filters: Filters<'_>) -> Result<usize> {
        if ids.is_none() && !filters.is_some() {
            return Err(Error::param(
                "delete",
                "ids or where or where_document (to delete every record, delete the collection)",
                "none of them",
            ));
        }
        self.write(|tx, live, seq| {
            let mut keys: Vec<(i64, String)> = match ids {
                Some(ids) => self
                    .existing_keys(tx, ids)?
                    .into_iter()
                    .map(|(i, k)| (k, i))
                    .collect(),
                None => Vec::new(),
            };
            if let Some(matching) = self.allowed(tx, live, filters)? {
                if ids.is_some() {
                    keys.retain(|(k, _)| matching.binary_search(k).is_ok());
                } else {
                    keys = matching
                        .into_iter()
                        .filter_map(|k| live.mirror.id(k).map(|i| (k, i.to_string())))
                        .collect();
                }
            }
            let mut change = Change::default();
            if keys.is_empty() {
                return Ok((change, 0));
            }
            let mut del =
                tx.prepare_cached("DELETE FROM records WHERE collection = ?1 AND id = ?2")?;
            let mut log = tx.prepare_cached(
                "INSERT INTO deletions (collection, seq, key) VALUES (?1, ?2, ?3)",
            )?;
            for (key, id) in &keys {
                text::forget(tx, self.info.id, *key)?;
                del.execute(params![self.info.id, id])?;
                log.execute(params![self.info.id, seq, key])?;
                change.removed.push(*key);
            }
            let n = keys.len();
            Ok((change, n))
        })
    }

    /// Number of records (that `filter` matches).
    pub fn count(&self, filter: Option<&Where>) -> Result<usize> {
        self.count_matching(Filters::meta(filter))
    }

    /// Number of records that `filters` match.
    pub fn count_matching(&self, filters: Filters<'_>) -> Result<usize> {
        let live = self.synced()?;
        if filters.document.is_none() {
            // A popcount of the match set: no key list is built.
            return Ok(match filters.meta {
                None => live.mirror.len(),
                Some(w) => live.mirror.select(w).len(),
            });
        }
        let conn = self.db.reader()?;
        Ok(self.allowed(&conn, &live, filters)?.map_or(0, |m| m.len()))
    }

    /// The keys `filters` match, ascending (`None` without filters), read through `conn`
    /// (the reader, or the writer's transaction).
    fn allowed(
        &self,
        conn: &Connection,
        live: &Live,
        filters: Filters<'_>,
    ) -> Result<Option<Vec<i64>>> {
        let meta = filters.meta.map(|w| live.mirror.matching(w));
        let Some(doc) = filters.document else {
            return Ok(meta);
        };
        let mut keys = text::matching(conn, self.info.id, doc, meta.as_deref())?;
        // Another process may have committed since `live` was synced: keep what it knows.
        keys.retain(|&k| live.mirror.contains(k));
        Ok(Some(keys))
    }

    /// Records by id (in the order asked, unknown ids skipped) or all of them (in insertion
    /// order), those `filter` matches, from `offset`, at most `limit`.
    pub fn get(
        &self,
        ids: Option<&[String]>,
        filter: Option<&Where>,
        limit: Option<usize>,
        offset: usize,
        include: Include,
    ) -> Result<Records> {
        self.get_matching(ids, Filters::meta(filter), limit, offset, include)
    }

    /// [`Collection::get`] with a `where_document` filter too.
    pub fn get_matching(
        &self,
        ids: Option<&[String]>,
        filters: Filters<'_>,
        limit: Option<usize>,
        offset: usize,
        include: Include,
    ) -> Result<Records> {
        let live = self.synced()?;
        let conn = self.db.reader()?;
        let matching = self.allowed(&conn, &live, filters)?;
        let filtered = matching.is_some();
        let mut sql = String::from(
            "SELECT id, metadata, document, CASE WHEN ?2 THEN vector END FROM records
             WHERE collection = ?1",
        );
        if ids.is_some() {
            sql.push_str(" AND id IN rarray(?3)");
        }
        if matching.is_some() {
            sql.push_str(" AND key IN rarray(?4)");
        }
        sql.push_str(" ORDER BY rowid");
        // With ids, the order is the caller's: limit and offset apply after reordering.
        if ids.is_none() {
            sql.push_str(" LIMIT ?5 OFFSET ?6");
        }
        let limit_sql = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset_sql = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&sql)?;
        let ids_arg = rarray(ids.unwrap_or(&[]).iter().cloned());
        let keys_arg = rarray(matching.unwrap_or_default());
        let mut bound: Vec<(usize, SqlValue)> =
            vec![(1, self.info.id.into()), (2, include.vectors.into())];
        if ids.is_none() {
            bound.push((5, limit_sql.into()));
            bound.push((6, offset_sql.into()));
        }
        for (i, v) in bound {
            stmt.raw_bind_parameter(i, v)?;
        }
        if ids.is_some() {
            stmt.raw_bind_parameter(3, &ids_arg)?;
        }
        if filtered {
            stmt.raw_bind_parameter(4, &keys_arg)?;
        }
        let mut rows = stmt.raw_query();
        // id, metadata, document, vector
        type Found = (String, Option<Metadata>, Option<String>, Vec<f32>);
        let mut found: Vec<Found> = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let meta = if include.metadata {
                parse_meta(r.get(1)?, &id)?
            } else {
                None
            };
            let doc = if include.documents { r.get(2)? } else { None };
            let mut v = Vec::new();
            if let Some(b) = r.get_ref(3)?.as_blob_or_null()? {
                push_vector(&mut v, b, self.info.dim, &id)?;
            }
            found.push((id, meta, doc, v));
        }
        drop(rows);
        drop(live);
        if let Some(ids) = ids {
            let mut by_id: std::collections::HashMap<String, _> =
                found.into_iter().map(|f| (f.0.clone(), f)).collect();
            found = ids.iter().filter_map(|i| by_id.remove(i)).collect();
            let end = limit.map_or(found.len(), |l| offset.saturating_add(l).min(found.len()));
            found = found.drain(offset.min(end)..end).collect();
        }
        let mut out = Records::default();
        for (id, meta, doc, v) in found {
            out.ids.push(id);
            if include.metadata {
                out.metadata.push(meta);
            }
            if include.documents {
                out.documents.push(doc);
            }
            out.vectors.extend(v);
        }
        Ok(out)
    }

    /// The `k` nearest records of each query (row-major, `dim` values each) among those
    /// `filter` matches: exactly `min(k, matches)` per query.
    pub fn query(
        &self,
        queries: &[f32],
        k: usize,
        filter: Option<&Where>,
        include: Include,
    ) -> Result<Vec<QueryHits>> {
        self.search(&Query {
            mode: QueryMode::Vector,
            vectors: Some(queries),
            texts: None,
            k,
            filters: Filters::meta(filter),
            include,
        })
    }

    /// A query in any mode among the records `q.filters` match, one result per query row:
    /// - [`QueryMode::Vector`]: the `min(k, matches)` nearest to each vector, closest first, with
    ///   their distances;
    /// - [`QueryMode::Text`]: at most `k` records whose document holds a term of each text, best
    ///   BM25 first, with their scores (fewer when fewer documents match);
    /// - [`QueryMode::Hybrid`]: the `min(k, matches)` best by reciprocal rank fusion of both, with
    ///   the fused scores (`vectors` and `texts` row by row).
    ///
    /// See the module comment of [`super::text`].
    pub fn search(&self, q: &Query<'_>) -> Result<Vec<QueryHits>> {
        let dim = self.info.dim;
        let needs = |what: &'static str| {
            let mode = match q.mode {
                QueryMode::Vector => "vector",
                QueryMode::Text => "text",
                QueryMode::Hybrid => "hybrid",
            };
            Error::param(what, format!("{what} for a query in {mode} mode"), "none")
        };
        let vectors = match q.mode {
            QueryMode::Text => None,
            _ => Some(q.vectors.ok_or_else(|| needs("vectors"))?),
        };
        let texts = match q.mode {
            QueryMode::Vector => None,
            _ => Some(q.texts.ok_or_else(|| needs("texts"))?),
        };
        if let Some(v) = vectors {
            check_searchable(v, dim, "queries")?;
        }
        let nq = match (vectors, texts) {
            (Some(v), Some(t)) if v.len() / dim != t.len() => {
                return Err(Error::Shape {
                    name: "texts",
                    expected: v.len() / dim,
                    got: t.len(),
                })
            }
            (_, Some(t)) => t.len(),
            (Some(v), None) => v.len() / dim,
            (None, None) => 0,
        };
        let k = q.k;
        if k == 0 {
            return Err(Error::param("k", "a positive integer", 0));
        }
        let live = self.synced()?;
        let matching = match q.filters.document {
            Some(_) => self.allowed(&*self.db.reader()?, &live, q.filters)?,
            None => q.filters.meta.map(|w| live.mirror.matching(w)),
        };
        let allow = |key: i64| {
            live.mirror.contains(key)
                && matching
                    .as_ref()
                    .is_none_or(|m| m.binary_search(&key).is_ok())
        };
        let ranked_texts = |depth: usize| -> Result<Vec<Vec<(i64, f64)>>> {
            let conn = self.db.reader()?;
            texts
                .unwrap_or_default()
                .iter()
                .map(|t| text::search(&conn, self.info.id, t, depth, allow, matching.is_none()))
                .collect()
        };
        // Per query row: the keys, their distances (vector mode) or scores (the others).
        let hits: Vec<(Vec<i64>, Vec<f32>, Vec<f64>)> = match (q.mode, vectors) {
            (QueryMode::Vector, Some(v)) => self
                .nearest(&live, v, k, matching.as_ref())?
                .into_iter()
                .map(|(keys, d)| (keys, d, Vec::new()))
                .collect(),
            (QueryMode::Hybrid, Some(v)) => {
                let depth = text::fusion_depth(k);
                let near = self.nearest(&live, v, depth, matching.as_ref())?;
                let words = ranked_texts(depth)?;
                near.into_iter()
                    .zip(words)
                    .map(|((by_vector, _), by_text)| {
                        let by_text: Vec<i64> = by_text.into_iter().map(|(key, _)| key).collect();
                        let (keys, scores) =
                            text::fuse(&[&by_vector, &by_text], k).into_iter().unzip();
                        (keys, Vec::new(), scores)
                    })
                    .collect()
            }
            _ => ranked_texts(k)?
                .into_iter()
                .map(|r| {
                    let (keys, scores) = r.into_iter().unzip();
                    (keys, Vec::new(), scores)
                })
                .collect(),
        };
        debug_assert_eq!(hits.len(), nq);
        let docs = if q.include.documents {
            let keys: Vec<i64> = hits.iter().flat_map(|h| h.0.iter().copied()).collect();
            self.documents(&keys)?
        } else {
            Default::default()
        };
        let mut out = Vec::with_capacity(nq);
        for (keys, distances, scores) in hits {
            let mut r = QueryHits {
                distances,
                scores,
                ..Default::default()
            };
            for &key in &keys {
                r.ids
                    .push(live.mirror.id(key).unwrap_or_default().to_string());
                if q.include.metadata {
                    r.metadata.push(live.mirror.metadata(key).cloned());
                }
                if q.include.documents {
                    r.documents.push(docs.get(&key).cloned().flatten());
                }
            }
            out.push(r);
        }
        Ok(out)
    }

    /// The `k` nearest of each query among `matching` (`None`: every record): exactly
    /// `min(k, matches)` keys and distances per query.
    fn nearest(
        &self,
        live: &Live,
        queries: &[f32],
        k: usize,
        matching: Option<&Vec<i64>>,
    ) -> Result<Vec<(Vec<i64>, Vec<f32>)>> {
        let dim = self.info.dim;
        let nq = queries.len() / dim;
        let n = matching.map_or(live.mirror.len(), Vec::len);
        let kk = k.min(n);
        let mut hits: Vec<(Vec<i64>, Vec<f32>)> = vec![Default::default(); nq];
        if kk > 0 {
            let threads = if nq >= 4 { resolve_threads(None) } else { 1 };
            let few = |m: &Vec<i64>| {
                m.len() <= EXACT_SCAN_MAX
                    || (m.len() as f64) < EXACT_SCAN_SHARE * live.mirror.len() as f64
            };
            let (ids, distances) = match matching {
                Some(m) if few(m) => self.scan(&*live.index, m, queries, kk, threads)?,
                _ => {
                    let allowed = matching.map(|m| allowed(&*live.index, m));
                    let opts = SearchOptions {
                        threads,
                        ef_search: self.ef_search(),
                        ..Default::default()
                    };
                    let r = live.index.search(queries, kk, allowed.as_ref(), &opts)?;
                    (r.ids, r.distances)
                }
            };
            for (q, h) in hits.iter_mut().enumerate() {
                *h = found(&ids, &distances, q, kk);
                // An approximate search that found fewer than min(k, matches) (a filter that
                // cut the graph apart) is answered by an exact scan of the candidates.
                if h.0.len() < kk {
                    let keys = matching.cloned().unwrap_or_else(|| live.index.ids());
                    let one = &queries[q * dim..(q + 1) * dim];
                    let (ids, distances) = self.scan(&*live.index, &keys, one, kk, 1)?;
                    *h = found(&ids, &distances, 0, kk);
                }
            }
        }
        Ok(hits)
    }

    fn ef_search(&self) -> Option<usize> {
        self.info
            .params
            .get("ef_search")
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
    }

    /// Exact k-NN of `queries` among the vectors of `keys`: `k` places per query, padded
    /// with id −1.
    fn scan(
        &self,
        index: &dyn Index,
        keys: &[i64],
        queries: &[f32],
        k: usize,
        threads: usize,
    ) -> Result<(Vec<i64>, Vec<f32>)> {
        let dim = self.info.dim;
        let nq = queries.len() / dim;
        let mut data = Vec::with_capacity(keys.len() * dim);
        let mut present = Vec::with_capacity(keys.len());
        for &key in keys {
            if let Some(v) = index.get(key) {
                data.extend_from_slice(&v);
                present.push(key);
            }
        }
        let (mut ids, mut distances) = (vec![-1i64; nq * k], vec![f32::INFINITY; nq * k]);
        let kk = k.min(present.len());
        if kk == 0 {
            return Ok((ids, distances));
        }
        let params = SearchParams {
            threads,
            ..Default::default()
        };
        let res = knn(&Base::new(&data, dim), queries, kk, self.metric, &params)?;
        for q in 0..nq {
            for j in 0..kk {
                let i = res.indices[q * kk + j];
                ids[q * k + j] = usize::try_from(i)
                    .ok()
                    .and_then(|i| present.get(i))
                    .copied()
                    .unwrap_or(-1);
                distances[q * k + j] = res.distances[q * kk + j];
            }
        }
        Ok((ids, distances))
    }

    /// Documents by key.
    fn documents(&self, keys: &[i64]) -> Result<std::collections::HashMap<i64, Option<String>>> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let conn = self.db.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT key, document FROM records WHERE collection = ?1 AND key IN rarray(?2)",
        )?;
        let rows = stmt.query_map(params![self.info.id, rarray(keys.iter().copied())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes the index snapshot (atomically, with the sequence number it covers), then
    /// prunes the deletion log up to it. Returns the snapshot's path. Waits for a background
    /// snapshot in progress first.
    pub fn snapshot(&self) -> Result<std::path::PathBuf> {
        self.wait_for_snapshot();
        drop(self.synced()?);
        write_snapshot(&self.db, &self.info, &self.state, &self.snapshot_lock)?;
        Ok(self.snapshot_path())
    }

    /// Starts writing a snapshot on another thread, unless one is still being written: the
    /// writer that made it due returns without waiting for the encoding and the fsync.
    /// Best effort: the writes are committed; a snapshot that fails only costs replay time
    /// at the next open.
    fn snapshot_in_background(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let (db, info) = (Arc::clone(&self.db), self.info.clone());
        let (state, lock) = (Arc::clone(&self.state), Arc::clone(&self.snapshot_lock));
        *pending = std::thread::Builder::new()
            .name("knnkit-snapshot".into())
            .spawn(move || {
                let _ = write_snapshot(&db, &info, &state, &lock);
            })
            .ok();
    }

    /// Waits until the background snapshot in progress, if any, is written.
    pub fn wait_for_snapshot(&self) {
        let handle = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Checks the full-text index against the documents (see [`text::check`]); returns its
    /// rows. For checks: it takes the write lock.
    pub fn check_text_index(&self) -> Result<usize> {
        let mut conn = self.db.writer()?;
        let tx = schema::begin_write(&mut conn)?;
        text::check(&tx, self.info.id)
    }

    /// The derived index's live vectors, and whether it was loaded from a snapshot (rather
    /// than rebuilt from SQLite) when the collection was last loaded: for checks and stats.
    pub fn index_state(&self) -> Result<(usize, bool)> {
        let live = self.synced()?;
        Ok((live.index.len(), live.from_snapshot))
    }
}

/// Encodes the collection's index as it stands (under the state's read lock: queries go on,
/// writes wait for the encoding only), writes it atomically with what it covers, then prunes
/// the deletion log up to it. Skips an index that must be reloaded or a dropped collection.
fn write_snapshot(
    db: &Shared,
    info: &CollectionInfo,
    state: &RwLock<Live>,
    lock: &Mutex<()>,
) -> Result<()> {
    let _one_at_a_time = lock
        .lock()
        .map_err(|_| Error::Internal("a snapshot lock was poisoned".into()))?;
    let (bytes, covers) = {
        let live = state
            .read()
            .map_err(|_| Error::Internal("a collection lock was poisoned".into()))?;
        if live.dropped || live.reload {
            return Ok(());
        }
        let epoch = schema::epoch(&*db.reader()?)?;
        let mut extra = Map::new();
        extra.insert("collection_id".into(), info.id.into());
        extra.insert("store_epoch".into(), epoch.into());
        extra.insert("covers_seq".into(), live.applied.into());
        (live.index.encode(&extra)?, live.applied)
    };
    crate::io::write_atomic(&db.snapshot_path(&info.name, &info.index), &bytes)?;
    drop(bytes);
    let mut conn = db.writer()?;
    let tx = schema::begin_write(&mut conn)?;
    schema::prune_deletions(&tx, info.id, covers)?;
    tx.commit()?;
    drop(conn);
    if let Ok(mut live) = state.write() {
        if live.applied == covers {
            live.since_snapshot = 0;
        }
    }
    Ok(())
}
