//! Full text: each collection's FTS5 index of its records' documents, BM25 search over it,
//! reciprocal rank fusion with the vector search, and the `where_document` filter.
//!
//! ## The index
//!
//! One FTS5 table per collection, `fts_<collection id>`, created with the collection and
//! dropped with it:
//!
//! ```sql
//! CREATE VIRTUAL TABLE fts_7 USING fts5(document, content='',
//!                                       tokenize='unicode61 remove_diacritics 2')
//! ```
//!
//! - **Contentless, keyed by the record's key.** The FTS row of a record is its index key
//!   (`rowid = key`) and holds only the inverted index, not the text: documents are stored
//!   once, in `records`. An external-content table (`content='records'`) would also store them
//!   once, but it must be keyed by `records`' implicit rowid, which a full `VACUUM` may
//!   renumber (the table has no `INTEGER PRIMARY KEY`; the store's incremental vacuum moves
//!   pages, not rows), and a search would then map rowids back to keys; keyed by the key, a
//!   hit is already what the mirror, the `where` matches and the vector hits speak of. A row leaves with FTS5's `'delete'` command, given the text it was indexed
//!   with: the write reads it from `records` in the same transaction, before changing the
//!   record (the row and the record's document are equal by this module's invariant).
//!   `contentless_delete=1` would delete by rowid alone, but it does not take the deleted
//!   row out of the table's totals (row count and token count), so BM25's `N` and average
//!   length would drift with every delete (scores were 40 % off after 20 random writes;
//!   `tests/test_store_text.py` checks scores against an oracle after random writes, and
//!   [`check`] the totals against the rows).
//! - **One table per collection**, not one for the store: BM25 weighs a term by how many of
//!   the collection's documents hold it and a document's length by the collection's average,
//!   so a shared table would let one collection's documents change another's ranking.
//! - **Kept in step by the write transaction itself**: the write paths (add, upsert, update,
//!   delete, delete_collection) change the FTS rows in the same `BEGIN IMMEDIATE` transaction
//!   as the records, so they commit or roll back together (crash harness:
//!   `tests/test_store_crash.py` checks both after every kill). A record has an FTS row when
//!   it has a document (`""` included); a record whose key changes (a new vector) has its row
//!   moved to the new key. Triggers on `records` were the alternative: they cannot name a
//!   per-collection table, so each collection would need its own trigger, evaluated for every
//!   row written to any collection.
//! - **Tokenizer**: `unicode61` with `remove_diacritics 2`: tokens are runs of letters,
//!   digits and private-use characters, matched without case and diacritics (`Café` = `cafe`).
//!   Positions are kept (`detail=full`): BM25 needs each row's term frequencies, and phrase
//!   queries need positions.
//! - **Migration**: schema version 1 (stores written before full text) has no FTS tables;
//!   opening such a store creates and fills one per collection and sets version 2, in one
//!   transaction (`schema::init`). An older knnkit refuses to open the result (it checks the
//!   version when it opens a store), but one that had the store open before would keep
//!   writing records without their FTS rows: processes sharing a store upgrade together.
//!
//! ## Text search
//!
//! A query string is cut into terms (runs of alphanumeric characters); each distinct term
//! (compared in lower case; at most [`MAX_QUERY_TERMS`]) is quoted (`"term"`) and the terms
//! are joined with `OR`, so no query text is ever read as FTS5 syntax (`"`, `AND`, `foo*(` are
//! words or nothing) and a query without terms matches nothing. Records are ranked by FTS5's
//! `bm25()` (k1 = 1.2, b = 0.75; a term's IDF is `ln((N − n + 0.5) / (n + 0.5))`, at least
//! 1e-6), summed over the query's distinct terms (a repeated word counts once: FTS5's time
//! grows with the square of the repeats), reported negated so that higher is better; ties go
//! to the smaller key (the older record). Only records holding at least one term are ranked, so a text query
//! returns at most `k` records (fewer when fewer documents match). Cost: FTS5 scores every
//! document holding a query term (≈ 2 µs each: `bm25()` reads its positions and its size),
//! then SQLite keeps the best `k` (unfiltered) or the ranked stream is read until `k` pass
//! the filters. Measured on 100,000 records with 8-word documents (a Zipf vocabulary of
//! 5,000 words; AMD EPYC, 2 vCPUs): a rare word ≈ 0.13 ms, three words found in 54,000
//! documents ≈ 100 ms (FTS5's own `ORDER BY rank LIMIT k` took ≈ 190 ms there).
//!
//! ## Hybrid search
//!
//! Reciprocal rank fusion (Cormack, Clarke & Büttcher 2009): the vector list and the BM25
//! list are each taken to depth `D = 2k + 60`; a record scores `Σ 1 / (60 + rank)` over the
//! lists it is in (ranks from 1); the `k` best are returned (ties: the better single rank,
//! then the smaller key). The depth is the smallest that keeps every record of the true fused
//! top `k` in at least one list: the `k`-th fused score is at least `1 / (60 + k)` (the
//! vector list's own top `k` score that much; a vector list shorter than `k` holds every
//! match, and nothing is cut), and a record beyond both lists' depth scores
//! less than `2 / (61 + D)`, which is below it exactly when `D > 2k + 59`. A record found by
//! one list and cut from the other loses less than `1 / (61 + D)`, which can reorder near
//! ties only. The vector list holds `min(D, matches)` records, so hybrid search returns
//! `min(k, matches)` like vector search.
//!
//! ## `where_document`
//!
//! `{"$contains": s}` matches the records whose document contains `s` (case-sensitive
//! substring, as in Chroma; a record without a document does not match), `{"$not_contains":
//! s}` is its negation (records without a document match), `{"$and": [...]}` and `{"$or":
//! [...]}` combine them, and several entries in one dict must all hold. It is evaluated on
//! the documents in SQLite (only the keys `where` matched, when they are few) and the keys
//! intersected with `where`'s. FTS5 cannot answer a substring test on its own (a substring
//! may start or end inside a token, and tokens are case-folded), so every match is confirmed on
//! the text. When the needle holds a whole ASCII word bounded by ASCII separators (`"brown"`
//! in `"quick brown fox"`), the documents holding that token are a superset of the matches, and
//! FTS5 narrows the scan to them ([`prefilter`]).
//!
//! Measured on the 100,000 records above (384-d vectors): reading every document costs
//! ≈ 230 ms, and the pages are the cost, not the test (SQL's `instr()` and a full table scan
//! instead of the key index: 165–180 ms; the rows hold the vectors, ≈ 200 MB of pages);
//! narrowed by a rare whole word ≈ 0.07 ms. Finding the vocabulary terms that contain a
//! needle (to narrow needles that are not whole words) took ≈ 60 ms by itself (`fts5vocab`
//! walks every doclist), so needles without a whole word are scanned.

use std::collections::HashMap;
use std::rc::Rc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::error::{Error, Result};

/// The reciprocal rank fusion constant.
pub const RRF_K: usize = 60;

/// The most distinct words a query text may hold. FTS5's time per matching document grows with
/// the square of the query's terms that it holds (measured: 100 documents holding all of 300
/// query words, 0.11 s; 1,000 words, 0.7 s; one word repeated 20,000 times, 3 minutes before
/// repeats were merged): a query, not a document.
pub const MAX_QUERY_TERMS: usize = 128;

/// Below this many allowed keys, `where_document` reads just their documents; above, it scans
/// the collection's documents and intersects.
const LOOKUP_MAX: usize = 4096;

/// The FTS5 table of a collection.
pub fn table(collection: i64) -> String {
    format!("fts_{collection}")
}

/// Creates a collection's FTS table (inside a write transaction).
pub fn create(conn: &Connection, collection: i64) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE {} USING fts5(document, content='', \
         tokenize='unicode61 remove_diacritics 2');",
        table(collection)
    ))?;
    Ok(())
}

/// Indexes every document a collection holds (a new FTS table, in a migration).
pub fn fill(conn: &Connection, collection: i64) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO {}(rowid, document) SELECT key, document FROM records
             WHERE collection = ?1 AND document IS NOT NULL",
            table(collection)
        ),
        [collection],
    )?;
    Ok(())
}

/// Drops a collection's FTS table (inside a write transaction).
pub fn drop_table(conn: &Connection, collection: i64) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", table(collection)))?;
    Ok(())
}

/// Indexes `document` as the record with key `key`.
pub fn insert(conn: &Connection, collection: i64, key: i64, document: &str) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {}(rowid, document) VALUES (?1, ?2)",
        table(collection)
    ))?
    .execute(params![key, document])?;
    Ok(())
}

/// Removes the FTS row of key `key`, indexed with `document` (FTS5 takes the tokens out of
/// the index and out of its totals).
pub fn remove(conn: &Connection, collection: i64, key: i64, document: &str) -> Result<()> {
    let t = table(collection);
    conn.prepare_cached(&format!(
        "INSERT INTO {t}({t}, rowid, document) VALUES ('delete', ?1, ?2)"
    ))?
    .execute(params![key, document])?;
    Ok(())
}

/// The document SQLite holds for key `key` (`None`: no such record, or no document).
pub fn stored(conn: &Connection, collection: i64, key: i64) -> Result<Option<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT document FROM records WHERE collection = ?1 AND key = ?2")?;
    let mut rows = stmt.query(params![collection, key])?;
    Ok(match rows.next()? {
        Some(r) => r.get(0)?,
        None => None,
    })
}

/// Removes the FTS row of key `key` if the record has a document (before the record is
/// deleted).
pub fn forget(conn: &Connection, collection: i64, key: i64) -> Result<()> {
    if let Some(doc) = stored(conn, collection, key)? {
        remove(conn, collection, key, &doc)?;
    }
    Ok(())
}

/// Moves a record's FTS row from what it was (`old`: its key and document) to what it is
/// (`new`), touching the index only when something changed.
pub fn replace(
    conn: &Connection,
    collection: i64,
    old: (i64, Option<&str>),
    new: (i64, Option<&str>),
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    if let Some(doc) = old.1 {
        remove(conn, collection, old.0, doc)?;
    }
    if let Some(doc) = new.1 {
        insert(conn, collection, new.0, doc)?;
    }
    Ok(())
}

/// The FTS5 query for a user's text: its distinct terms (runs of alphanumeric characters,
/// compared in lower case, first occurrence kept), each quoted, joined by `OR`; `None` when it
/// has no terms, an error past [`MAX_QUERY_TERMS`].
pub fn fts_query(text: &str) -> Result<Option<String>> {
    let mut seen = std::collections::HashSet::new();
    let terms: Vec<String> = text
        .split(|c: char| !is_term_char(c))
        .filter(|t| !t.is_empty() && seen.insert(t.to_lowercase()))
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    if terms.len() > MAX_QUERY_TERMS {
        return Err(Error::param(
            "texts",
            format!("query texts of at most {MAX_QUERY_TERMS} distinct words"),
            format!("a text of {} distinct words", terms.len()),
        ));
    }
    Ok((!terms.is_empty()).then(|| terms.join(" OR ")))
}

/// Characters of terms: letters, digits and private-use characters (what `unicode61` keeps;
/// FTS5 tokenizes each quoted term again, so a disagreement on rarer characters costs only
/// precision of the split, never a syntax error).
fn is_term_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// The records whose document holds a term of `text`, best BM25 first (score: higher is
/// better), those `allow` passes, at most `k`.
pub fn search(
    conn: &Connection,
    collection: i64,
    text: &str,
    k: usize,
    allow: impl Fn(i64) -> bool,
    unfiltered: bool,
) -> Result<Vec<(i64, f64)>> {
    let Some(q) = fts_query(text)? else {
        return Ok(Vec::new());
    };
    let t = table(collection);
    // Unfiltered, SQLite keeps only the best k while sorting; filtered, the ranked stream is
    // read until k pass.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT rowid, bm25({t}) AS score FROM {t} WHERE {t} MATCH ?1
         ORDER BY score, rowid LIMIT ?2"
    ))?;
    let limit = if unfiltered {
        i64::try_from(k).unwrap_or(i64::MAX)
    } else {
        -1
    };
    let mut rows = stmt.query(params![q, limit])?;
    let mut out = Vec::with_capacity(k.min(1024));
    while out.len() < k {
        let Some(r) = rows.next()? else { break };
        let key: i64 = r.get(0)?;
        if allow(key) {
            let score: f64 = r.get(1)?;
            out.push((key, -score));
        }
    }
    Ok(out)
}

/// Reciprocal rank fusion of ranked lists of keys: the `k` best `(key, score)`, best first.
pub fn fuse(lists: &[&[i64]], k: usize) -> Vec<(i64, f64)> {
    // key -> (score, best rank)
    let mut acc: HashMap<i64, (f64, usize)> = HashMap::new();
    for list in lists {
        for (r, &key) in list.iter().enumerate() {
            let e = acc.entry(key).or_insert((0.0, usize::MAX));
            e.0 += 1.0 / (RRF_K + r + 1) as f64;
            e.1 = e.1.min(r);
        }
    }
    let mut all: Vec<(i64, f64, usize)> = acc.into_iter().map(|(k, (s, r))| (k, s, r)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all.into_iter().map(|(k, s, _)| (k, s)).collect()
}

/// The depth each list is taken to for a fused top `k` (see the module comment).
pub fn fusion_depth(k: usize) -> usize {
    k.saturating_mul(2).saturating_add(RRF_K)
}

/// A parsed `where_document` filter.
#[derive(Clone, Debug, PartialEq)]
pub enum DocFilter {
    Contains(String),
    NotContains(String),
    And(Vec<DocFilter>),
    Or(Vec<DocFilter>),
}

/// Operators of `where_document`.
pub const DOC_OPS: [&str; 4] = ["$contains", "$not_contains", "$and", "$or"];

fn doc_err(expected: impl Into<String>, got: impl ToString) -> Error {
    Error::param("where_document", expected, got)
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("str {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a dict".into(),
    }
}

impl DocFilter {
    /// Parses `{"$contains": str}`, `{"$not_contains": str}`, `{"$and": [..]}`, `{"$or": [..]}`
    /// (several entries: all hold).
    pub fn parse(v: &Value) -> Result<DocFilter> {
        let Value::Object(map) = v else {
            return Err(doc_err(
                "a dict such as {\"$contains\": \"text\"}",
                json_kind(v),
            ));
        };
        if map.is_empty() {
            return Err(doc_err("a dict with at least one operator", "{}"));
        }
        let mut parts = Vec::with_capacity(map.len());
        for (op, arg) in map {
            parts.push(match op.as_str() {
                "$contains" | "$not_contains" => {
                    let Value::String(s) = arg else {
                        return Err(doc_err(format!("a str after {op}"), json_kind(arg)));
                    };
                    if op == "$contains" {
                        DocFilter::Contains(s.clone())
                    } else {
                        DocFilter::NotContains(s.clone())
                    }
                }
                "$and" | "$or" => {
                    let items = match arg {
                        Value::Array(items) if !items.is_empty() => items,
                        _ => {
                            return Err(doc_err(
                                format!("a non-empty list of filters after {op}"),
                                json_kind(arg),
                            ))
                        }
                    };
                    let fs = items
                        .iter()
                        .map(DocFilter::parse)
                        .collect::<Result<Vec<_>>>()?;
                    if op == "$and" {
                        DocFilter::And(fs)
                    } else {
                        DocFilter::Or(fs)
                    }
                }
                _ => {
                    return Err(doc_err(
                        format!("one of {}", DOC_OPS.join(" ")),
                        format!("unknown operator {op:?}"),
                    ))
                }
            });
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            DocFilter::And(parts)
        })
    }

    /// True when a record with this document (`None`: none) passes.
    pub fn matches(&self, doc: Option<&str>) -> bool {
        match self {
            DocFilter::Contains(s) => doc.is_some_and(|d| d.contains(s.as_str())),
            DocFilter::NotContains(s) => !doc.is_some_and(|d| d.contains(s.as_str())),
            DocFilter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            DocFilter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
        }
    }
}

/// The keys of the records whose document `filter` matches, ascending, among `within` (sorted
/// keys; `None`: every record).
pub fn matching(
    conn: &Connection,
    collection: i64,
    filter: &DocFilter,
    within: Option<&[i64]>,
) -> Result<Vec<i64>> {
    let within = match (within, prefilter(conn, collection, filter)?) {
        (Some(w), Some(p)) => Some(intersect(w, &p)),
        (w, p) => p.or_else(|| w.map(<[i64]>::to_vec)),
    };
    let mut out = Vec::new();
    let mut visit = |r: &rusqlite::Row<'_>| -> Result<()> {
        let key: i64 = r.get(0)?;
        if filter.matches(r.get_ref(1)?.as_str_or_null()?) {
            out.push(key);
        }
        Ok(())
    };
    match &within {
        Some(keys) if keys.len() <= LOOKUP_MAX => {
            let mut stmt = conn.prepare_cached(
                "SELECT key, document FROM records WHERE collection = ?1 AND key IN rarray(?2)",
            )?;
            let arg: Rc<Vec<SqlValue>> = Rc::new(keys.iter().map(|&k| k.into()).collect());
            let mut rows = stmt.query(params![collection, arg])?;
            while let Some(r) = rows.next()? {
                visit(r)?;
            }
            out.sort_unstable();
        }
        _ => {
            let mut stmt = conn.prepare_cached(
                "SELECT key, document FROM records WHERE collection = ?1 ORDER BY key",
            )?;
            let mut rows = stmt.query([collection])?;
            while let Some(r) = rows.next()? {
                visit(r)?;
            }
            if let Some(keys) = &within {
                out = intersect(keys, &out);
            }
        }
    }
    Ok(out)
}

/// Keys of two ascending lists that are in both.
pub fn intersect(a: &[i64], b: &[i64]) -> Vec<i64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .copied()
        .filter(|k| large.binary_search(k).is_ok())
        .collect()
}

/// The ASCII words of a needle that a document containing it must hold as whole tokens: the
/// runs of ASCII letters and digits with an ASCII separator on both sides inside the needle.
fn whole_words(needle: &str) -> Vec<&str> {
    let b = needle.as_bytes();
    let sep = |i: usize| b[i].is_ascii() && !b[i].is_ascii_alphanumeric();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if start > 0 && sep(start - 1) && i < b.len() && sep(i) {
                out.push(&needle[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// An FTS5 query whose matches are a superset of `filter`'s (`None`: no such query, every
/// record is a candidate). A `$contains` whose needle holds a whole word needs that word's
/// token (see [`whole_words`]: `unicode61` cuts ASCII text at exactly the ASCII separators and
/// folds only case there).
fn superset_query(filter: &DocFilter) -> Option<String> {
    match filter {
        DocFilter::Contains(s) => {
            let words = whole_words(s);
            (!words.is_empty()).then(|| {
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            })
        }
        DocFilter::NotContains(_) => None,
        DocFilter::And(fs) => {
            let qs: Vec<String> = fs.iter().filter_map(superset_query).collect();
            (!qs.is_empty()).then(|| format!("({})", qs.join(") AND (")))
        }
        DocFilter::Or(fs) => {
            let qs: Option<Vec<String>> = fs.iter().map(superset_query).collect();
            qs.map(|qs| format!("({})", qs.join(") OR (")))
        }
    }
}

/// The candidate keys (ascending) of `filter` by its FTS5 superset query, when it has one.
pub fn prefilter(
    conn: &Connection,
    collection: i64,
    filter: &DocFilter,
) -> Result<Option<Vec<i64>>> {
    let Some(q) = superset_query(filter) else {
        return Ok(None);
    };
    let t = table(collection);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT rowid FROM {t} WHERE {t} MATCH ?1 ORDER BY rowid"
    ))?;
    let keys = stmt
        .query_map([q], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(Some(keys))
}

/// Checks that a collection's FTS rows are exactly its records with a document, that the
/// totals BM25 reads (rows, tokens) agree with the rows' sizes and with the index's token
/// instances, and FTS5's own integrity check; returns the number of FTS rows. Runs inside a
/// transaction the caller rolls back (it creates a temporary table).
pub fn check(conn: &Connection, collection: i64) -> Result<usize> {
    let t = table(collection);
    let fts: Vec<i64> = conn
        .prepare(&format!("SELECT rowid FROM {t} ORDER BY rowid"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let docs: Vec<i64> = conn
        .prepare(
            "SELECT key FROM records WHERE collection = ?1 AND document IS NOT NULL ORDER BY key",
        )?
        .query_map([collection], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let bad = |what: String| {
        Err(Error::Corrupt(format!(
            "the full-text index of collection {collection}: {what}"
        )))
    };
    if fts != docs {
        return bad(format!(
            "{} rows, but {} records with a document (or other keys)",
            fts.len(),
            docs.len()
        ));
    }
    // The totals: the averages record (id 1 of the data table) holds varints: rows, tokens.
    let averages: Vec<u8> = conn
        .query_row(
            &format!("SELECT block FROM {t}_data WHERE id = 1"),
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    let mut at = 0;
    let rows = varint(&averages, &mut at).unwrap_or(0);
    let tokens = varint(&averages, &mut at).unwrap_or(0);
    let mut sizes = 0u64;
    let mut stmt = conn.prepare(&format!("SELECT sz FROM {t}_docsize"))?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        let sz = r.get_ref(0)?.as_blob()?;
        sizes += varint(sz, &mut 0).unwrap_or(0);
    }
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE temp.{t}_instances USING fts5vocab(main, {t}, 'instance');"
    ))?;
    let instances: i64 = conn.query_row(
        &format!("SELECT count(*) FROM temp.{t}_instances"),
        [],
        |r| r.get(0),
    )?;
    if rows != fts.len() as u64 || tokens != sizes || sizes != instances as u64 {
        return bad(format!(
            "totals of {rows} rows and {tokens} tokens, but {} rows of {sizes} tokens and \
             {instances} token instances",
            fts.len()
        ));
    }
    conn.execute(
        &format!("INSERT INTO {t}({t}, rank) VALUES ('integrity-check', 0)"),
        [],
    )?;
    Ok(fts.len())
}

/// An SQLite varint (1 to 9 bytes, big-endian groups of 7 bits; the ninth byte counts 8).
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*at)?;
        *at += 1;
        if i == 8 {
            return Some((v << 8) | u64::from(byte));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    Some(v)
}
