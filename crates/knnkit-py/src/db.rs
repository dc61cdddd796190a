//! `Db` and `Collection`: the store (`knnkit_core::db`) as Python objects (the `knnkit.Store`
//! façade wraps them).
//!
//! Python values become the core's types here, with the GIL held: metadata and `where`
//! filters go through JSON values ([`to_json`]: a `TypeError` naming the path of anything that
//! is not a dict, list, str, int, float or bool), vectors are borrowed float32 rows. Every core
//! call then runs with the GIL released through the gate of [`crate::error`]; results come
//! back as plain dicts and lists.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use knnkit_core::db::{
    self, DocFilter, Filters, Include, MetaValue, Metadata, Options, Query, QueryMode, Scalar,
    Spec, Where, Write,
};

use crate::conversion::{matrix, rows};
use crate::error::{detach_interruptible, to_py};

/// A Python value as JSON: dicts with str keys, lists and tuples, str, int (int64), float,
/// bool. `path` names the value in errors (`metadata[2]['tags'][0]`).
fn to_json(ob: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if ob.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(ob.extract()?));
    }
    if let Ok(s) = ob.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_string()));
    }
    if ob.is_instance_of::<PyFloat>() {
        return float(ob.extract()?, path);
    }
    if let Ok(d) = ob.cast::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let Ok(k) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{path}: expected str keys, got a key of type {}",
                    type_name(&k)
                )));
            };
            let k = k.to_str()?.to_string();
            let v = to_json(&v, &format!("{path}[{k:?}]"))?;
            m.insert(k, v);
        }
        return Ok(Value::Object(m));
    }
    if ob.cast::<PyList>().is_ok() || ob.cast::<PyTuple>().is_ok() {
        let items = ob
            .try_iter()?
            .enumerate()
            .map(|(i, item)| to_json(&item?, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(items));
    }
    // Python ints and integer-like objects (numpy integers): exactly, within int64.
    if ob.hasattr("__index__")? {
        return ob.extract::<i64>().map(Value::from).map_err(|_| {
            PyValueError::new_err(format!(
                "{path}: expected an int within int64 range, got {ob}"
            ))
        });
    }
    // Other real numbers (numpy floats).
    if ob.hasattr("__float__")? && !ob.is_none() {
        if let Ok(f) = ob.extract::<f64>() {
            return float(f, path);
        }
    }
    Err(PyTypeError::new_err(format!(
        "{path}: expected a str, int, float or bool, or a list or dict of those, got {}",
        type_name(ob)
    )))
}

fn float(f: f64, path: &str) -> PyResult<Value> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| PyValueError::new_err(format!("{path}: expected a finite number, got {f}")))
}

fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn scalar_to_py<'py>(py: Python<'py>, s: &Scalar) -> PyResult<Bound<'py, PyAny>> {
    Ok(match s {
        Scalar::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Scalar::Int(i) => i.into_pyobject(py)?.into_any(),
        Scalar::Float(f) => f.into_pyobject(py)?.into_any(),
        Scalar::Str(s) => PyString::new(py, s).into_any(),
    })
}

fn meta_to_py<'py>(py: Python<'py>, m: &Option<Metadata>) -> PyResult<Bound<'py, PyAny>> {
    let Some(m) = m else {
        return Ok(py.None().into_bound(py));
    };
    let d = PyDict::new(py);
    for (k, v) in &m.0 {
        match v {
            MetaValue::One(s) => d.set_item(k, scalar_to_py(py, s)?)?,
            MetaValue::List(items) => {
                let l = PyList::empty(py);
                for s in items {
                    l.append(scalar_to_py(py, s)?)?;
                }
                d.set_item(k, l)?;
            }
        }
    }
    Ok(d.into_any())
}

/// The `where` filter of a Python dict (`None`: no filter).
fn parse_where(ob: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Where>> {
    match ob {
        Some(ob) if !ob.is_none() => {
            let v = to_json(ob, "where")?;
            Where::parse(&v).map(Some).map_err(to_py)
        }
        _ => Ok(None),
    }
}

/// The `where_document` filter of a Python dict (`None`: no filter).
fn parse_doc_filter(ob: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DocFilter>> {
    match ob {
        Some(ob) if !ob.is_none() => {
            let v = to_json(ob, "where_document")?;
            DocFilter::parse(&v).map(Some).map_err(to_py)
        }
        _ => Ok(None),
    }
}

fn strings(ob: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if ob.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a list of str, got a str"
        )));
    }
    ob.try_iter()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{name}: expected a list of str, got {}",
                type_name(ob)
            ))
        })?
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            item.cast::<PyString>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{name}[{i}]: expected a str, got {}",
                        type_name(&item)
                    ))
                })?
                .to_str()
                .map(str::to_string)
        })
        .collect()
}

/// A per-record list (`None` entries allowed) converted by `f`.
fn per_record<T>(
    ob: Option<&Bound<'_, PyAny>>,
    name: &str,
    f: impl Fn(&Bound<'_, PyAny>, &str) -> PyResult<T>,
) -> PyResult<Option<Vec<Option<T>>>> {
    let Some(ob) = ob.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if ob.is_instance_of::<PyString>() || ob.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a list with one entry per id, got {}",
            type_name(ob)
        )));
    }
    let iter = ob.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name}: expected a list with one entry per id, got {}",
            type_name(ob)
        ))
    })?;
    iter.enumerate()
        .map(|(i, item)| {
            let item = item?;
            if item.is_none() {
                Ok(None)
            } else {
                f(&item, &format!("{name}[{i}]")).map(Some)
            }
        })
        .collect::<PyResult<Vec<_>>>()
        .map(Some)
}

fn metadata_of(ob: &Bound<'_, PyAny>, path: &str) -> PyResult<Metadata> {
    if !ob.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "{path}: expected a dict or None, got {}",
            type_name(ob)
        )));
    }
    let v = to_json(ob, path)?;
    Metadata::from_json(&v).map_err(|e| PyValueError::new_err(format!("{path}: {e}")))
}

fn document_of(ob: &Bound<'_, PyAny>, path: &str) -> PyResult<String> {
    ob.cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{path}: expected a str or None, got {}",
                type_name(ob)
            ))
        })?
        .to_str()
        .map(str::to_string)
}

fn spec(
    dim: Option<usize>,
    metric: Option<String>,
    index: Option<String>,
    params: Option<&Bound<'_, PyDict>>,
) -> PyResult<Spec> {
    let params = match params {
        Some(p) if !p.is_empty() => match to_json(p.as_any(), "params")? {
            Value::Object(m) => Some(m),
            _ => None,
        },
        _ => None,
    };
    Ok(Spec {
        dim,
        metric,
        index,
        params,
    })
}

fn info_dict<'py>(py: Python<'py>, info: &db::CollectionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &info.name)?;
    d.set_item("dim", info.dim)?;
    d.set_item("metric", &info.metric)?;
    d.set_item("index", &info.index)?;
    d.set_item("params", Value::Object(info.params.clone()).to_string())?;
    d.set_item("created", &info.created)?;
    Ok(d)
}

/// A store directory (internal; use ``knnkit.Store``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct Db {
    inner: db::Db,
}

#[pymethods]
impl Db {
    #[new]
    #[pyo3(signature = (path, durability="full", timeout=5.0, snapshot_every=50_000))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        timeout: f64,
        snapshot_every: usize,
    ) -> PyResult<Self> {
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "timeout: expected a non-negative number of seconds, got {timeout}"
            )));
        }
        let opts = Options {
            durability: db::Durability::parse(durability).map_err(to_py)?,
            timeout: Duration::from_secs_f64(timeout.min(1e9)),
            snapshot_every,
        };
        let inner = detach_interruptible(py, |_| db::Db::open(&path, opts))?;
        Ok(Db { inner })
    }

    /// Creates (``mode="create"``), opens (``"get"``) or either (``"get_or_create"``) the
    /// collection ``name``; what is given must match an existing collection.
    #[pyo3(signature = (name, mode, dim=None, metric=None, index=None, params=None))]
    fn collection(
        &self,
        py: Python<'_>,
        name: &str,
        mode: &str,
        dim: Option<usize>,
        metric: Option<String>,
        index: Option<String>,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Collection> {
        let spec = spec(dim, metric, index, params)?;
        let inner = detach_interruptible(py, |_| match mode {
            "create" => self.inner.create_collection(name, &spec),
            "get" => self.inner.get_collection(name, &spec),
            "get_or_create" => self.inner.get_or_create_collection(name, &spec),
            other => Err(knnkit_core::Error::InvalidParameter {
                name: "mode",
                expected: "'create', 'get' or 'get_or_create'".into(),
                got: format!("{other:?}"),
            }),
        })?;
        Ok(Collection { inner })
    }

    /// Every collection: ``[{"name", "dim", "metric", "index", "params" (JSON), "created"}]``.
    fn list_collections<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let infos = detach_interruptible(py, |_| self.inner.list_collections())?;
        infos.iter().map(|i| info_dict(py, i)).collect()
    }

    fn delete_collection(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        detach_interruptible(py, |_| self.inner.delete_collection(name))
    }

    /// Copies the database into the directory ``path`` (SQLite's online backup).
    fn backup(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        detach_interruptible(py, |_| self.inner.backup(&path))
    }

    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }
}

/// A collection of a store (internal; use ``knnkit.Store``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct Collection {
    inner: Arc<db::Collection>,
}

impl Collection {
    fn write_of(
        &self,
        ids: &Bound<'_, PyAny>,
        vectors: Option<PyReadonlyArray2<'_, f32>>,
        metadata: Option<&Bound<'_, PyAny>>,
        documents: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let vectors = match &vectors {
            Some(v) => {
                let dim = self.inner.info().dim;
                if v.shape()[1] != dim {
                    return Err(to_py(knnkit_core::Error::DimensionMismatch {
                        expected: dim,
                        got: v.shape()[1],
                    }));
                }
                Some(rows(v, "vectors")?.to_vec())
            }
            None => None,
        };
        Ok(Write {
            ids: strings(ids, "ids")?,
            vectors,
            metadata: per_record(metadata, "metadata", metadata_of)?,
            documents: per_record(documents, "documents", document_of)?,
        })
    }
}

#[pymethods]
impl Collection {
    /// ``{"name", "dim", "metric", "index", "params" (JSON), "created"}``.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, self.inner.info())
    }

    #[pyo3(signature = (ids, vectors=None, metadata=None, documents=None))]
    fn add(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: Option<PyReadonlyArray2<'_, f32>>,
        metadata: Option<&Bound<'_, PyAny>>,
        documents: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let w = self.write_of(ids, vectors, metadata, documents)?;
        detach_interruptible(py, |_| self.inner.add(&w))
    }

    #[pyo3(signature = (ids, vectors=None, metadata=None, documents=None))]
    fn upsert(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: Option<PyReadonlyArray2<'_, f32>>,
        metadata: Option<&Bound<'_, PyAny>>,
        documents: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let w = self.write_of(ids, vectors, metadata, documents)?;
        detach_interruptible(py, |_| self.inner.upsert(&w))
    }

    #[pyo3(signature = (ids, vectors=None, metadata=None, documents=None))]
    fn update(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: Option<PyReadonlyArray2<'_, f32>>,
        metadata: Option<&Bound<'_, PyAny>>,
        documents: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let w = self.write_of(ids, vectors, metadata, documents)?;
        detach_interruptible(py, |_| self.inner.update(&w))
    }

    /// Deletes the records with these ids that ``where`` and ``where_document`` match;
    /// returns how many.
    #[pyo3(signature = (ids=None, r#where=None, where_document=None))]
    fn delete(
        &self,
        py: Python<'_>,
        ids: Option<&Bound<'_, PyAny>>,
        r#where: Option<&Bound<'_, PyAny>>,
        where_document: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let ids = ids
            .filter(|o| !o.is_none())
            .map(|o| strings(o, "ids"))
            .transpose()?;
        let w = parse_where(r#where)?;
        let d = parse_doc_filter(where_document)?;
        let filters = Filters {
            meta: w.as_ref(),
            document: d.as_ref(),
        };
        detach_interruptible(py, |_| self.inner.delete_matching(ids.as_deref(), filters))
    }

    #[pyo3(signature = (r#where=None, where_document=None))]
    fn count(
        &self,
        py: Python<'_>,
        r#where: Option<&Bound<'_, PyAny>>,
        where_document: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let w = parse_where(r#where)?;
        let d = parse_doc_filter(where_document)?;
        let filters = Filters {
            meta: w.as_ref(),
            document: d.as_ref(),
        };
        detach_interruptible(py, |_| self.inner.count_matching(filters))
    }

    /// ``{"ids": [...], "metadata": [...], "documents": [...], "vectors": (n, dim) array}``
    /// (the fields asked for).
    #[pyo3(signature = (ids=None, r#where=None, limit=None, offset=0, metadata=true, documents=true, vectors=false, where_document=None))]
    #[allow(clippy::too_many_arguments)]
    fn get<'py>(
        &self,
        py: Python<'py>,
        ids: Option<&Bound<'py, PyAny>>,
        r#where: Option<&Bound<'py, PyAny>>,
        limit: Option<usize>,
        offset: usize,
        metadata: bool,
        documents: bool,
        vectors: bool,
        where_document: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = ids
            .filter(|o| !o.is_none())
            .map(|o| strings(o, "ids"))
            .transpose()?;
        let w = parse_where(r#where)?;
        let d = parse_doc_filter(where_document)?;
        let filters = Filters {
            meta: w.as_ref(),
            document: d.as_ref(),
        };
        let include = Include {
            metadata,
            documents,
            vectors,
        };
        let r = detach_interruptible(py, |_| {
            self.inner
                .get_matching(ids.as_deref(), filters, limit, offset, include)
        })?;
        let out = PyDict::new(py);
        let n = r.ids.len();
        out.set_item("ids", r.ids)?;
        if metadata {
            let m = r
                .metadata
                .iter()
                .map(|m| meta_to_py(py, m))
                .collect::<PyResult<Vec<_>>>()?;
            out.set_item("metadata", m)?;
        }
        if documents {
            out.set_item("documents", r.documents)?;
        }
        if vectors {
            out.set_item("vectors", matrix(py, r.vectors, n, self.inner.info().dim)?)?;
        }
        Ok(out)
    }

    /// ``{"ids": [[...]], "distances" or "scores": [[...]], "metadata": [[...]],
    /// "documents": [[...]]}``: one list per query row, best first. ``mode="vector"``:
    /// ``min(k, matches)`` nearest with their distances; ``"text"``: at most ``k`` by BM25 of
    /// ``texts`` with their scores; ``"hybrid"``: ``min(k, matches)`` by reciprocal rank
    /// fusion of both with the fused scores.
    #[pyo3(signature = (vectors=None, k=10, r#where=None, metadata=true, documents=true, texts=None, where_document=None, mode="vector"))]
    #[allow(clippy::too_many_arguments)]
    fn query<'py>(
        &self,
        py: Python<'py>,
        vectors: Option<PyReadonlyArray2<'py, f32>>,
        k: usize,
        r#where: Option<&Bound<'py, PyAny>>,
        metadata: bool,
        documents: bool,
        texts: Option<&Bound<'py, PyAny>>,
        where_document: Option<&Bound<'py, PyAny>>,
        mode: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mode = QueryMode::parse(mode).map_err(to_py)?;
        let dim = self.inner.info().dim;
        if let Some(v) = &vectors {
            if v.shape()[1] != dim {
                return Err(to_py(knnkit_core::Error::DimensionMismatch {
                    expected: dim,
                    got: v.shape()[1],
                }));
            }
        }
        let q = vectors.as_ref().map(|v| rows(v, "vectors")).transpose()?;
        let texts = texts
            .filter(|o| !o.is_none())
            .map(|o| strings(o, "texts"))
            .transpose()?;
        let w = parse_where(r#where)?;
        let d = parse_doc_filter(where_document)?;
        let query = Query {
            mode,
            vectors: q,
            texts: texts.as_deref(),
            k,
            filters: Filters {
                meta: w.as_ref(),
                document: d.as_ref(),
            },
            include: Include {
                metadata,
                documents,
                vectors: false,
            },
        };
        let hits = detach_interruptible(py, |_| self.inner.search(&query))?;
        let (ids, values, meta, docs) = (
            PyList::empty(py),
            PyList::empty(py),
            PyList::empty(py),
            PyList::empty(py),
        );
        for h in hits {
            ids.append(h.ids)?;
            if mode == QueryMode::Vector {
                values.append(h.distances)?;
            } else {
                values.append(h.scores)?;
            }
            if metadata {
                let m = h
                    .metadata
                    .iter()
                    .map(|m| meta_to_py(py, m))
                    .collect::<PyResult<Vec<_>>>()?;
                meta.append(m)?;
            }
            if documents {
                docs.append(h.documents)?;
            }
        }
        let out = PyDict::new(py);
        out.set_item("ids", ids)?;
        let name = if mode == QueryMode::Vector {
            "distances"
        } else {
            "scores"
        };
        out.set_item(name, values)?;
        if metadata {
            out.set_item("metadata", meta)?;
        }
        if documents {
            out.set_item("documents", docs)?;
        }
        Ok(out)
    }

    /// Writes the index snapshot now; returns its path.
    fn snapshot(&self, py: Python<'_>) -> PyResult<PathBuf> {
        detach_interruptible(py, |_| self.inner.snapshot())
    }

    /// Checks the full-text index against the documents; returns its rows (for checks).
    fn check_text_index(&self, py: Python<'_>) -> PyResult<usize> {
        detach_interruptible(py, |_| self.inner.check_text_index())
    }

    /// ``(vectors in the index, loaded from a snapshot)`` (for checks).
    fn index_state(&self, py: Python<'_>) -> PyResult<(usize, bool)> {
        detach_interruptible(py, |_| self.inner.index_state())
    }
}
