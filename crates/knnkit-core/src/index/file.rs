//! Each index kind in the file format of [`crate::io`]: its header entries and its sections.
//!
//! | kind | header (besides `kind` and the caller's extras) | sections |
//! |---|---|---|
//! | `flat` | `dim metric p dtype bf16 ntotal next_id` | `vectors` (ntotal, dim) of `dtype`, `ids` int64 |
//! | `hnsw` | `dim metric m ef_construction seed inserted entry code_bits` | `vectors links0 codes code_norms` (mappable), `ids levels upper upper_offsets deleted sq_lo sq_step` |
//! | `ivf` | `dim metric nlist codes pq_m nbits refine seed` | `centroids list_offsets list_slots list_vecs list_codes ids vectors sq_lo sq_step pq_centroids` |
//!
//! Writers produce exactly what format v1 holds (files pinned in `tests/data/format_v1` keep
//! loading); HNSW files written before `code_bits` existed give it through `params.codes`.
//! Readers check every entry's type and leave the invariants to each kind's `from_parts`, which
//! reports [`Error::Corrupt`] for anything inconsistent. Sections marked mappable stay in the
//! file's mapping when it was opened with `mmap` (copied on the first change).

use std::path::Path;

use serde_json::{Map, Value};

use super::Index;
use crate::error::{Error, Result};
use crate::flat::index::FlatIndex;
use crate::float::Float;
use crate::hnsw::{Codes, Hnsw, HnswParts};
use crate::io::{self, Element, IndexFile, SectionData};
use crate::ivf::{Ivf, IvfParts};
use crate::metric::Metric;

/// The header entry naming an index's kind.
pub const KIND_KEY: &str = "kind";

/// Opens the index file at `path` (mapped when `mmap`) as whatever kind it holds.
pub fn open(path: &Path, mmap: bool) -> Result<Box<dyn Index>> {
    from_file(&IndexFile::open(path, mmap)?)
}

/// The index an opened file holds (float32 kinds; a float64 flat file is refused by name).
pub fn from_file(file: &IndexFile) -> Result<Box<dyn Index>> {
    match kind_of(file)? {
        "flat" => Ok(Box::new(read_flat::<f32>(file)?)),
        "hnsw" => Ok(Box::new(read_hnsw(file)?)),
        "ivf" => Ok(Box::new(read_ivf(file)?)),
        other => Err(corrupt(file, format!("unknown index kind {other:?}"))),
    }
}

/// The `kind` entry of a file's header.
pub fn kind_of(file: &IndexFile) -> Result<&str> {
    file.header()
        .get(KIND_KEY)
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt(file, "the header names no index kind".into()))
}

fn corrupt(file: &IndexFile, what: String) -> Error {
    Error::Corrupt(format!("{}: {what}", file.name()))
}

/// Typed access to header entries, each failure naming the entry.
struct Header<'a>(&'a IndexFile);

impl Header<'_> {
    fn value(&self, key: &str) -> Result<&Value> {
        self.0
            .header()
            .get(key)
            .ok_or_else(|| corrupt(self.0, format!("header entry {key:?} is missing")))
    }
    fn bad(&self, key: &str, want: &str) -> Error {
        corrupt(self.0, format!("header entry {key:?} is not {want}"))
    }
    fn u64(&self, key: &str) -> Result<u64> {
        self.value(key)?
            .as_u64()
            .ok_or_else(|| self.bad(key, "a non-negative integer"))
    }
    fn usize(&self, key: &str) -> Result<usize> {
        usize::try_from(self.u64(key)?).map_err(|_| self.bad(key, "an addressable size"))
    }
    fn i64(&self, key: &str) -> Result<i64> {
        self.value(key)?
            .as_i64()
            .ok_or_else(|| self.bad(key, "an integer"))
    }
    fn f64(&self, key: &str) -> Result<f64> {
        self.value(key)?
            .as_f64()
            .ok_or_else(|| self.bad(key, "a number"))
    }
    fn str(&self, key: &str) -> Result<&str> {
        self.value(key)?
            .as_str()
            .ok_or_else(|| self.bad(key, "a string"))
    }
    fn bool(&self, key: &str) -> Result<bool> {
        self.value(key)?
            .as_bool()
            .ok_or_else(|| self.bad(key, "true or false"))
    }
}

/// `entries` plus the caller's `extra` (which may not replace the kind's own entries).
fn header(
    kind: &str,
    entries: Vec<(&str, Value)>,
    extra: &Map<String, Value>,
) -> Map<String, Value> {
    let mut h = extra.clone();
    h.insert(KIND_KEY.into(), kind.into());
    for (k, v) in entries {
        h.insert(k.into(), v);
    }
    h
}

fn metric_entries(metric: Metric) -> [(&'static str, Value); 2] {
    let p = match metric {
        Metric::Minkowski(p) => p,
        _ => 2.0,
    };
    [("metric", metric.name().into()), ("p", p.into())]
}

// -- flat ---------------------------------------------------------------------------------------

/// The file of a flat index (float32 or float64).
pub fn encode_flat<T: Float + Element>(
    ix: &FlatIndex<T>,
    extra: &Map<String, Value>,
) -> Result<Vec<u8>> {
    let (n, d) = (ix.len(), ix.dim());
    let mut entries = vec![
        ("dim", d.into()),
        ("dtype", T::DTYPE.name().into()),
        ("bf16", ix.bf16().into()),
        ("ntotal", n.into()),
        ("next_id", ix.next_id().into()),
    ];
    entries.extend(metric_entries(ix.metric()));
    let vectors = SectionData {
        shape: vec![n, d],
        ..SectionData::of("vectors", ix.vectors())
    };
    io::encode(
        &header("flat", entries, extra),
        &[vectors, SectionData::of("ids", ix.ids())],
    )
}

/// The flat index a file holds; its element type must be `T`.
pub fn read_flat<T: Float + Element>(file: &IndexFile) -> Result<FlatIndex<T>> {
    let h = Header(file);
    let dtype = h.str("dtype")?;
    if dtype != T::DTYPE.name() {
        return Err(Error::param(
            "dtype",
            format!("a {} index", T::DTYPE.name()),
            format!("a {dtype} index in {}", file.name()),
        ));
    }
    let (dim, n) = (h.usize("dim")?, h.usize("ntotal")?);
    let metric =
        Metric::parse(h.str("metric")?, h.f64("p")?).map_err(|e| corrupt(file, e.to_string()))?;
    let shape = &file.section("vectors")?.shape;
    if shape[..] != [n, dim] {
        return Err(corrupt(
            file,
            format!("vectors have shape {shape:?}, the header says ({n}, {dim})"),
        ));
    }
    let ids: Vec<i64> = file.array("ids")?;
    if ids.len() != n {
        return Err(corrupt(
            file,
            format!("{} ids, the header says {n}", ids.len()),
        ));
    }
    let next_id = match file.header().get("next_id") {
        None => 0,
        Some(_) => h.i64("next_id")?,
    };
    FlatIndex::from_parts(
        dim,
        metric,
        h.bool("bf16")?,
        file.store("vectors")?,
        ids,
        next_id,
    )
}

// -- HNSW ---------------------------------------------------------------------------------------

pub(super) fn encode_hnsw(ix: &Hnsw, extra: &Map<String, Value>) -> Result<Vec<u8>> {
    let p = ix.to_parts();
    let entries = vec![
        ("dim", p.d.into()),
        ("metric", p.metric.clone().into()),
        ("m", p.m.into()),
        ("ef_construction", p.ef_construction.into()),
        ("seed", p.seed.into()),
        ("inserted", p.inserted.into()),
        ("entry", p.entry.into()),
        ("code_bits", p.code_bits.into()),
    ];
    io::encode(
        &header("hnsw", entries, extra),
        &[
            SectionData::of("vectors", &p.vectors[..]),
            SectionData::of("ids", &p.ids),
            SectionData::of("levels", &p.levels),
            SectionData::of("links0", &p.links0[..]),
            SectionData::of("upper", &p.upper),
            SectionData::of("upper_offsets", &p.upper_offsets),
            SectionData::of("deleted", &p.deleted),
            SectionData::of("sq_lo", &p.sq_lo),
            SectionData::of("sq_step", &p.sq_step),
            SectionData::of("codes", &p.codes[..]),
            SectionData::of("code_norms", &p.code_norms[..]),
        ],
    )
}

/// The HNSW index a file holds.
pub fn read_hnsw(file: &IndexFile) -> Result<Hnsw> {
    let h = Header(file);
    let code_bits = if file.header().contains_key("code_bits") {
        u8::try_from(h.u64("code_bits")?).map_err(|_| h.bad("code_bits", "0, 4 or 8"))?
    } else {
        // Files written before `code_bits` was a header entry.
        let codes = file
            .header()
            .get("params")
            .and_then(|p| p.get("codes"))
            .and_then(Value::as_str);
        match codes.and_then(Codes::from_name) {
            Some(c) => c.bits(),
            None => return Err(h.bad("params.codes", "one of sq8, sq4, flat")),
        }
    };
    Hnsw::from_parts(HnswParts {
        d: h.usize("dim")?,
        metric: h.str("metric")?.to_string(),
        m: h.usize("m")?,
        ef_construction: h.usize("ef_construction")?,
        seed: h.u64("seed")?,
        inserted: h.u64("inserted")?,
        entry: u32::try_from(h.u64("entry")?).map_err(|_| h.bad("entry", "a slot"))?,
        vectors: file.store("vectors")?,
        ids: file.array("ids")?,
        levels: file.array("levels")?,
        links0: file.store("links0")?,
        upper: file.array("upper")?,
        upper_offsets: file.array("upper_offsets")?,
        deleted: file.array("deleted")?,
        code_bits,
        sq_lo: file.array("sq_lo")?,
        sq_step: file.array("sq_step")?,
        codes: file.store("codes")?,
        code_norms: file.store("code_norms")?,
    })
}

// -- IVF ----------------------------------------------------------------------------------------

pub(super) fn encode_ivf(ix: &Ivf, extra: &Map<String, Value>) -> Result<Vec<u8>> {
    let p = ix.to_parts();
    let entries = vec![
        ("dim", p.d.into()),
        ("metric", p.metric.clone().into()),
        ("nlist", p.nlist.into()),
        ("codes", p.codes.clone().into()),
        ("pq_m", p.pq_m.into()),
        ("nbits", p.nbits.into()),
        ("refine", p.refine.into()),
        ("seed", p.seed.into()),
    ];
    io::encode(
        &header("ivf", entries, extra),
        &[
            SectionData::of("centroids", &p.centroids),
            SectionData::of("list_offsets", &p.list_offsets),
            SectionData::of("list_slots", &p.list_slots),
            SectionData::of("list_vecs", &p.list_vecs),
            SectionData::of("list_codes", &p.list_codes),
            SectionData::of("ids", &p.ids),
            SectionData::of("vectors", &p.vectors[..]),
            SectionData::of("sq_lo", &p.sq_lo),
            SectionData::of("sq_step", &p.sq_step),
            SectionData::of("pq_centroids", &p.pq_centroids),
        ],
    )
}

/// The IVF index a file holds.
pub fn read_ivf(file: &IndexFile) -> Result<Ivf> {
    let h = Header(file);
    Ivf::from_parts(IvfParts {
        d: h.usize("dim")?,
        metric: h.str("metric")?.to_string(),
        nlist: h.usize("nlist")?,
        codes: h.str("codes")?.to_string(),
        pq_m: h.usize("pq_m")?,
        nbits: h.usize("nbits")?,
        refine: h.bool("refine")?,
        seed: h.u64("seed")?,
        centroids: file.array("centroids")?,
        list_offsets: file.array("list_offsets")?,
        list_slots: file.array("list_slots")?,
        list_vecs: file.array("list_vecs")?,
        list_codes: file.array("list_codes")?,
        ids: file.array("ids")?,
        vectors: file.array("vectors")?,
        sq_lo: file.array("sq_lo")?,
        sq_step: file.array("sq_step")?,
        pq_centroids: file.array("pq_centroids")?,
    })
}
