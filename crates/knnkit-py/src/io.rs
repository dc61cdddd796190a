//! The index file format for Python (`knnkit.io`): the core's one reader and writer.
//!
//! `IndexFile.open` opens the file once (mapped or read) and validates it; the Python loaders
//! then copy the small sections out with `array` and hand the object itself to the native
//! indexes' `from_parts`, which map their large sections from that same mapping (`span`). A
//! save that renames a new file over the path in between cannot mix two files.

use std::path::PathBuf;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use knnkit_core::io::{self, Dtype, Element, SectionData};
use knnkit_core::store::{MappedFile, Store};
use knnkit_core::Error;

use crate::error::{detach_interruptible, to_py};

/// A validated index file (internal; see ``knnkit.io``).
#[pyclass(module = "knnkit._core", frozen)]
pub struct IndexFile {
    pub(crate) inner: io::IndexFile,
}

impl IndexFile {
    /// The mapping the file's sections live in, when it was opened with `mmap`.
    pub fn mapped_file(&self) -> Option<&std::sync::Arc<MappedFile>> {
        self.inner.mapped_file()
    }
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

    /// ``(byte offset, number of values)`` of section ``name``, for ``from_parts`` to map it.
    fn span(&self, name: &str) -> PyResult<(usize, usize)> {
        let s = self.inner.section(name).map_err(to_py)?;
        Ok((s.offset, s.count()))
    }
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
    let header: serde_json::Value = serde_json::from_str(header).map_err(|e| {
        to_py(Error::InvalidParameter {
            name: "header",
            expected: "JSON".into(),
            got: e.to_string(),
        })
    })?;
    let serde_json::Value::Object(header) = header else {
        return Err(to_py(Error::InvalidParameter {
            name: "header",
            expected: "a JSON object".into(),
            got: header.to_string(),
        }));
    };
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

/// A large array of a parts dict: `(offset, length)` in the mapped file, or a numpy array
/// (copied); a missing entry is empty.
pub fn store<T: numpy::Element + bytemuck::Pod>(
    parts: &Bound<'_, pyo3::types::PyDict>,
    key: &str,
    file: Option<&IndexFile>,
) -> PyResult<Store<T>> {
    use pyo3::types::PyDictMethods;
    let item = parts.get_item(key)?;
    if let (Some(mapped), Some(v)) = (file.and_then(IndexFile::mapped_file), &item) {
        if let Ok((offset, len)) = v.extract::<(usize, usize)>() {
            return Store::map(mapped, offset, len).map_err(to_py);
        }
    }
    if item.is_none() {
        return Ok(Store::default());
    }
    Ok(Store::Owned(crate::conversion::part_array(parts, key)?))
}
