//! The store's SQLite schema, its connections and the collection catalogue (see the module
//! comment of [`super`] for what each table means).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::{Map, Value};

use super::{text, CollectionInfo, Durability, Options, Spec};
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::validate::MAX_DIM;

/// The schema this build reads and writes: 2 adds one FTS5 table per collection (`text.rs`);
/// a store of version 1 is migrated when opened.
pub const SCHEMA_VERSION: i64 = 2;

/// The tables every version has (version 1 is exactly these).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS collections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    dim        INTEGER NOT NULL,
    metric     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    params     TEXT NOT NULL,
    created    TEXT NOT NULL,
    next_key   INTEGER NOT NULL DEFAULT 0,
    pruned_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    collection INTEGER NOT NULL,
    id         TEXT NOT NULL,
    key        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    vector     BLOB NOT NULL,
    metadata   TEXT,
    document   TEXT,
    PRIMARY KEY (collection, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records (collection, key);
CREATE INDEX IF NOT EXISTS records_seq ON records (collection, seq);
CREATE TABLE IF NOT EXISTS deletions (
    collection INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    key        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deletions_seq ON deletions (collection, seq);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
";

/// A connection to the store's database with the store's settings.
pub fn connect(path: &Path, opts: &Options) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(opts.timeout)?;
    // Only takes effect on a new, empty database (before the WAL header is written): free
    // pages can then be given back to the file system (see `reclaim_space`).
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Database(format!(
            "{}: the file system refused write-ahead logging (journal mode {mode:?})",
            path.display()
        )));
    }
    let sync = match opts.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
    ))?;
    rusqlite::vtab::array::load_module(&conn)?;
    Ok(conn)
}

fn schema_version(conn: &Connection) -> Option<i64> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// Creates the tables if missing (a store that has them is only read: opening never waits
/// for a writer) and checks the schema version.
pub fn init(conn: &mut Connection) -> Result<()> {
    let version = match schema_version(conn) {
        Some(v) => v,
        None => {
            let tx = begin_write(conn)?;
            tx.execute_batch(SCHEMA)?;
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
                [new_epoch()],
            )?;
            tx.commit()?;
            schema_version(conn).unwrap_or(0)
        }
    };
    let version = if version == 1 {
        migrate_from_v1(conn)?
    } else {
        version
    };
    if version != SCHEMA_VERSION {
        return Err(Error::Database(format!(
            "the store has schema version {version}; this knnkit reads version {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

/// Version 1 to 2: creates and fills each collection's FTS table, in one transaction (another
/// process may have migrated first: the version is read again under the write lock).
fn migrate_from_v1(conn: &mut Connection) -> Result<i64> {
    let tx = begin_write(conn)?;
    if schema_version(&tx) != Some(1) {
        return Ok(schema_version(&tx).unwrap_or(0));
    }
    let ids: Vec<i64> = tx
        .prepare("SELECT id FROM collections ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        text::create(&tx, id)?;
        text::fill(&tx, id)?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(SCHEMA_VERSION)
}

/// A random number naming a database's history: set when it is created and again in each
/// backup copy, written into snapshots, so a snapshot never serves a database of another
/// history (a backup copied over a store directory) whose sequence numbers it would misread.
pub fn new_epoch() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos ^ (u64::from(std::process::id()) << 32);
    (crate::rng::SplitMix64::new(seed).next_u64() >> 1) as i64
}

/// The database's epoch (see [`new_epoch`]).
pub fn epoch(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })?,
    )
}

/// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock is taken now, waiting at
/// most the busy timeout).
pub fn begin_write(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// The store's sequence number: the last write transaction's.
pub fn current_seq(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get(0))?)
}

/// Takes the next sequence number (inside a write transaction).
pub fn next_seq(tx: &Transaction<'_>) -> Result<i64> {
    let seq = current_seq(tx)? + 1;
    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'seq'", [seq])?;
    Ok(seq)
}

/// Bytes the write-ahead log is truncated to after a checkpoint: a burst of writes does not
/// leave a large `-wal` file behind.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Free pages (deleted rows, replaced vectors) past which a write gives them back to the file
/// system ...
const RECLAIM_MIN_PAGES: i64 = 256;
/// ... when they are also at least this share of the file.
const RECLAIM_SHARE: f64 = 0.125;

/// Gives free pages back to the file system when they pass [`RECLAIM_MIN_PAGES`] and
/// [`RECLAIM_SHARE`] of the database (an incremental vacuum: pages are moved from the end of
/// the file into the holes, then the file is truncated; the WAL carries the change, so the
/// main file shrinks at the next checkpoint). Stores created before auto-vacuum was set keep
/// their pages for reuse by later writes (no effect here). Call outside a transaction.
pub fn reclaim_space(conn: &Connection) -> Result<bool> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if free < RECLAIM_MIN_PAGES || (free as f64) < RECLAIM_SHARE * pages as f64 {
        return Ok(false);
    }
    // Each step of the statement frees one page: run it to its end.
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(true)
}

/// `PRAGMA data_version`: changes when another connection commits.
pub fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

const COLUMNS: &str = "id, name, dim, metric, kind, params, created";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CollectionInfo, String)> {
    let dim: i64 = r.get(2)?;
    Ok((
        CollectionInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            dim: usize::try_from(dim).unwrap_or(0),
            metric: r.get(3)?,
            index: r.get(4)?,
            params: Map::new(),
            created: r.get(6)?,
        },
        r.get(5)?,
    ))
}

fn finish(row: (CollectionInfo, String)) -> Result<CollectionInfo> {
    let (mut info, params) = row;
    info.params = match serde_json::from_str(&params) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(Error::Database(format!(
                "collection {:?}: its stored parameters are not a JSON object",
                info.name
            )))
        }
    };
    Ok(info)
}

/// The collection called `name`, if any.
pub fn collection(conn: &Connection, name: &str) -> Result<Option<CollectionInfo>> {
    let row = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM collections WHERE name = ?1"),
            [name],
            info_row,
        )
        .optional()?;
    row.map(finish).transpose()
}

/// True when the collection with this id still exists.
pub fn collection_exists(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM collections WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every collection, by name.
pub fn collections(conn: &Connection) -> Result<Vec<CollectionInfo>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM collections ORDER BY name"))?;
    let rows = stmt.query_map([], info_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The deletion-log horizon of a collection: deletions at or before it are gone.
pub fn pruned_seq(conn: &Connection, id: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT pruned_seq FROM collections WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// Hands out `n` new keys of a collection (inside a write transaction); returns the first.
pub fn take_keys(tx: &Transaction<'_>, id: i64, n: usize) -> Result<i64> {
    let first: i64 = tx.query_row(
        "SELECT next_key FROM collections WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let n = i64::try_from(n).map_err(|_| Error::param("ids", "fewer ids", n))?;
    tx.execute(
        "UPDATE collections SET next_key = ?2 WHERE id = ?1",
        params![id, first + n],
    )?;
    Ok(first)
}

/// Forgets the deletions a snapshot covering `seq` no longer needs.
pub fn prune_deletions(tx: &Transaction<'_>, id: i64, seq: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM deletions WHERE collection = ?1 AND seq <= ?2",
        params![id, seq],
    )?;
    tx.execute(
        "UPDATE collections SET pruned_seq = max(pruned_seq, ?2) WHERE id = ?1",
        params![id, seq],
    )?;
    Ok(())
}

/// Removes a collection and everything it holds (inside a write transaction).
pub fn delete_collection(tx: &Transaction<'_>, id: i64) -> Result<()> {
    next_seq(tx)?;
    tx.execute("DELETE FROM records WHERE collection = ?1", [id])?;
    tx.execute("DELETE FROM deletions WHERE collection = ?1", [id])?;
    tx.execute("DELETE FROM collections WHERE id = ?1", [id])?;
    text::drop_table(tx, id)?;
    Ok(())
}

/// A collection name: 1 to 128 of `A-Z a-z 0-9 _ - .`, not starting with `.` or `-` (it names
/// the snapshot file).
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !name.starts_with(['.', '-']);
    if !ok {
        return Err(Error::param(
            "name",
            "1 to 128 characters of A-Z a-z 0-9 _ - . (not starting with . or -)",
            format!("{name:?}"),
        ));
    }
    Ok(())
}

/// Creates a collection from a spec (inside a write transaction): the defaults filled in and
/// every parameter checked, so the stored row describes its index completely.
pub fn insert_collection(tx: &Transaction<'_>, name: &str, spec: &Spec) -> Result<CollectionInfo> {
    check_name(name)?;
    let dim = spec.dim.ok_or_else(|| {
        Error::param("dim", "the dimension of a new collection's vectors", "none")
    })?;
    if !(1..=MAX_DIM).contains(&dim) {
        return Err(Error::param(
            "dim",
            format!("an integer in [1, {MAX_DIM}]"),
            dim,
        ));
    }
    let metric = Metric::parse(spec.metric.as_deref().unwrap_or("cosine"), 2.0)?
        .name()
        .to_string();
    let index = spec.index.as_deref().unwrap_or("hnsw").to_string();
    let params = index_params(&index, spec.params.as_ref())?;
    let mut info = CollectionInfo {
        id: 0,
        name: name.to_string(),
        dim,
        metric,
        index,
        params,
        created: String::new(),
    };
    // Builds an empty index once, so every parameter the kind checks is checked now.
    super::collection::new_index(&info)?;
    tx.execute(
        "INSERT INTO collections (name, dim, metric, kind, params, created)
         VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        params![
            name,
            dim as i64,
            info.metric,
            info.index,
            Value::Object(info.params.clone()).to_string()
        ],
    )?;
    info.id = tx.last_insert_rowid();
    text::create(tx, info.id)?;
    info.created = tx.query_row(
        "SELECT created FROM collections WHERE id = ?1",
        [info.id],
        |r| r.get(0),
    )?;
    Ok(info)
}

/// The HNSW parameters a store collection takes, with their defaults: the `HNSWIndex`
/// façade's (SQ8 codes for traversal, exact float32 re-rank), except `ef_construction`: 100,
/// as Chroma and Qdrant use, since a store builds its graph on the write path. Measured on
/// 100,000 MiniLM words (2 vCPUs, batches of 1,000): ingest 1.5× faster than at 200, recall@10
/// 0.977 against 0.985, query time the same. SQ8 rather than float32 traversal halves the
/// query time and nearly doubles ingest at the same recall; the code ranges learnt on a
/// store's first small batches are relearnt as later rows fall outside them (see `hnsw`'s
/// module comment), so rows added one batch at a time are not clamped.
pub const HNSW_PARAMS: [(&str, &str); 5] = [
    ("m", "16"),
    ("ef_construction", "100"),
    ("ef_search", "64"),
    ("codes", "\"sq8\""),
    ("seed", "0"),
];

/// The one catalogue parameter that is not the index's: the name of the embedder that makes
/// the collection's vectors from text (`knnkit.embed`), recorded when the collection is created
/// with one, so that a later open knows which model its vectors come from. Any kind takes it;
/// the core only stores and compares it.
pub const EMBEDDER_PARAM: &str = "embedder";
const EMBEDDER_NAME_MAX: usize = 256;

/// The full parameters of an index kind: defaults, overridden by `given` (unknown names and
/// wrong types are errors), plus the embedder's name when given.
fn index_params(kind: &str, given: Option<&Map<String, Value>>) -> Result<Map<String, Value>> {
    let defaults: &[(&str, &str)] = match kind {
        "hnsw" => &HNSW_PARAMS,
        "flat" => &[],
        "ivf" => {
            return Err(Error::param(
                "index",
                "'hnsw' or 'flat' (an IVF index must be trained on data before its first \
                 insertion; store collections support it in a later version)",
                "'ivf'",
            ))
        }
        other => {
            return Err(Error::param(
                "index",
                "'hnsw' or 'flat'",
                format!("{other:?}"),
            ))
        }
    };
    let mut out = Map::new();
    for (k, v) in defaults {
        out.insert(
            (*k).to_string(),
            serde_json::from_str(v).unwrap_or(Value::Null),
        );
    }
    for (k, v) in given.into_iter().flatten() {
        if k == EMBEDDER_PARAM {
            match v.as_str() {
                Some(name) if (1..=EMBEDDER_NAME_MAX).contains(&name.len()) => {}
                _ => {
                    return Err(Error::param(
                        "params",
                        format!("{EMBEDDER_PARAM} as a str of 1 to {EMBEDDER_NAME_MAX} bytes"),
                        v.to_string(),
                    ))
                }
            }
            out.insert(k.clone(), v.clone());
            continue;
        }
        let Some(default) = out.get(k) else {
            let names: Vec<&str> = defaults.iter().map(|(k, _)| *k).collect();
            return Err(Error::param(
                "params",
                if names.is_empty() {
                    format!("no parameters for a {kind} index")
                } else {
                    format!("parameters of a {kind} index: {}", names.join(", "))
                },
                format!("{k:?}"),
            ));
        };
        let ok = match default {
            Value::String(_) => v.is_string(),
            _ => v.is_u64(),
        };
        if !ok {
            return Err(Error::param(
                "params",
                format!(
                    "{k} as {}",
                    if default.is_string() {
                        "a str"
                    } else {
                        "a non-negative int"
                    }
                ),
                v.to_string(),
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// Checks that an existing collection is what `spec` names.
pub fn check_matches(info: &CollectionInfo, spec: &Spec) -> Result<()> {
    let mismatch = |what: &'static str, want: String, have: String| {
        Err(Error::param(
            what,
            format!("{want} (what the call asked for)"),
            format!("collection {:?} has {have}", info.name),
        ))
    };
    if let Some(dim) = spec.dim {
        if dim != info.dim {
            return mismatch("dim", dim.to_string(), info.dim.to_string());
        }
    }
    if let Some(m) = &spec.metric {
        let m = Metric::parse(m, 2.0)?.name();
        if m != info.metric {
            return mismatch("metric", m.to_string(), info.metric.clone());
        }
    }
    if let Some(kind) = &spec.index {
        if *kind != info.index {
            return mismatch("index", kind.clone(), info.index.clone());
        }
    }
    if let Some(p) = &spec.params {
        // The embedder is checked on its own: a collection made without one may be opened with
        // one (nothing is recorded then), and naming only the embedder checks no index parameter.
        let mut p = p.clone();
        let embedder = p.remove(EMBEDDER_PARAM);
        if let (Some(want), Some(have)) = (&embedder, info.params.get(EMBEDDER_PARAM)) {
            if want != have {
                return mismatch(EMBEDDER_PARAM, want.to_string(), have.to_string());
            }
        }
        if embedder.is_none() || !p.is_empty() {
            let want = index_params(&info.index, Some(&p))?;
            let mut have = info.params.clone();
            have.remove(EMBEDDER_PARAM);
            if want != have {
                return mismatch(
                    "params",
                    Value::Object(want).to_string(),
                    Value::Object(have).to_string(),
                );
            }
        }
    }
    Ok(())
}
