//! The index file format for Python (`knnkit.io`): the core's one reader and writer.
//!
//! `IndexFile.open` opens the file once (mapped or read) and validates it; the native indexes'
//! `from_file` then read their kind from that same object (`knnkit_core::index::file`), mapping
//! their large sections from its mapping. A save that renames a new file over the path in
//! between cannot mix two files. Indexes write themselves (`save`, `encode`: the core encodes,
//! `io::write_atomic` writes); `write_index_file` writes any header and sections (tests forge
//! files with it).

use std::path::PathBuf;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::{Map, Value};

use knnkit_core::io::{self, Dtype, Element, SectionData};
use knnkit_core::Error;

use crate::error::{detach_interruptible, to_py};

/// A validated index file (internal; see ``knnkit.io``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct IndexFile {
    pub(crate) inner: io::IndexFile,
}

fn to_numpy<T: Element + numpy::Element>(
    py: Python<'_>,
    f: &io::IndexFile,
    name: &str,
    shape: &[usize],
) -> PyResult<Py<PyAny>> {
    let v = f.array::<T>(name).map_err(to_py)?;
    Ok(PyArray1::from_vec(py, v)
        .reshape(shape)?
        .into_any()
        .unbind())
}

#[pymethods]
impl IndexFile {
    /// Opens and validates ``path``; ``mmap`` maps it instead of reading it
    /// (``CorruptIndexError`` for a damaged or foreign file, ``OSError`` when it cannot be read).
    #[staticmethod]
    #[pyo3(signature = (path, mmap=true))]
    fn open(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Self> {
        let inner = detach_interruptible(py, |_| io::IndexFile::open(&path, mmap))?;
        Ok(IndexFile { inner })
    }

    /// Validates the bytes of a whole file (as ``encode`` returns them), held in memory.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: Vec<u8>) -> PyResult<Self> {
        let inner = detach_interruptible(py, |_| io::IndexFile::from_bytes("<bytes>", data))?;
        Ok(IndexFile { inner })
    }

    /// The header as JSON text (its ``sections`` table included).
    fn header(&self) -> String {
        self.inner.header_json()
    }

    /// True when the sections are read from a file mapping.
    fn mapped(&self) -> bool {
        self.inner.is_mapped()
    }

    /// Names of the sections, in file order.
    fn names(&self) -> Vec<String> {
        self.inner
            .sections()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// A copy of section ``name`` as a numpy array of its dtype and shape.
    fn array(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        let s = self.inner.section(name).map_err(to_py)?;
        let (f, shape) = (&self.inner, s.shape.clone());
        match s.dtype {
            Dtype::F32 => to_numpy::<f32>(py, f, name, &shape),
            Dtype::F64 => to_numpy::<f64>(py, f, name, &shape),
            Dtype::I64 => to_numpy::<i64>(py, f, name, &shape),
            Dtype::U8 => to_numpy::<u8>(py, f, name, &shape),
            Dtype::U32 => to_numpy::<u32>(py, f, name, &shape),
            Dtype::U64 => to_numpy::<u64>(py, f, name, &shape),
        }
    }
}

/// A JSON object's text as a map (`InvalidParameter` naming `what` otherwise).
pub fn json_object(text: &str, what: &'static str) -> PyResult<Map<String, Value>> {
    let bad = |got: String| {
        to_py(Error::InvalidParameter {
            name: what,
            expected: "a JSON object".into(),
            got,
        })
    };
    match serde_json::from_str(text).map_err(|e| bad(e.to_string()))? {
        Value::Object(m) => Ok(m),
        other => Err(bad(other.to_string())),
    }
}

/// Writes the file `encode` returns (run with the GIL released) to `path` atomically.
pub fn save_encoded(
    py: Python<'_>,
    path: PathBuf,
    encode: impl FnOnce() -> knnkit_core::Result<Vec<u8>> + Send,
) -> PyResult<()> {
    detach_interruptible(py, |_| io::write_atomic(&path, &encode()?))
}

/// The file `encode` returns (run with the GIL released), as bytes.
pub fn encoded_bytes(
    py: Python<'_>,
    encode: impl FnOnce() -> knnkit_core::Result<Vec<u8>> + Send,
) -> PyResult<Py<PyBytes>> {
    let bytes = detach_interruptible(py, |_| encode())?;
    Ok(PyBytes::new(py, &bytes).unbind())
}

/// Writes an index file atomically (temp file, fsync, rename, directory fsync).
///
/// ``header`` is a JSON object's text; ``sections`` are ``(name, dtype name, shape, bytes)``
/// with the bytes as a 1-D uint8 array.
#[pyfunction]
pub fn write_index_file(
    py: Python<'_>,
    path: PathBuf,
    header: &str,
    sections: Vec<(String, String, Vec<usize>, PyReadonlyArray1<'_, u8>)>,
) -> PyResult<()> {
    let header = json_object(header, "header")?;
    let mut data = Vec::with_capacity(sections.len());
    for (name, dtype, shape, bytes) in &sections {
        let dtype = Dtype::parse(dtype).ok_or_else(|| {
            to_py(Error::InvalidParameter {
                name: "section dtype",
                expected: "float32, float64, int64, uint8, uint32 or uint64".into(),
                got: dtype.clone(),
            })
        })?;
        let bytes = bytes.as_slice().map_err(|_| {
            to_py(Error::InvalidParameter {
                name: "section bytes",
                expected: "a contiguous uint8 array".into(),
                got: name.clone(),
            })
        })?;
        data.push(SectionData {
            name,
            dtype,
            shape: shape.clone(),
            bytes,
        });
    }
    detach_interruptible(py, |_| io::write(&path, &header, &data))
}
