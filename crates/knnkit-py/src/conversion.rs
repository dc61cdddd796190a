//! Borrowing numpy arrays for the core, and handing results back.
//!
//! Every binding has one shape: [`Matrix::extract`] borrows (or, only when needed, converts) the
//! input while holding the GIL; the core runs under `py.detach` on plain slices; results come back
//! as owned numpy arrays. Conversion is delegated to `numpy.require`, which is a no-op for arrays
//! that are already C-contiguous, aligned and of a float dtype, so memmaps and read-only arrays are
//! read in place.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use knnkit_core::Float;

/// A 2-D float array borrowed from Python (C-contiguous, aligned).
pub enum Matrix<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

fn numpy_require<'py>(
    py: Python<'py>,
    ob: &Bound<'py, PyAny>,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    static REQUIRE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let require = REQUIRE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("numpy")?.getattr("require")?.unbind())
    })?;
    require.bind(py).call1((ob, dtype, PyString::new(py, "CA")))
}

/// The float dtype an array of `kind`/`itemsize` computes in: float32 stays, float16 widens to
/// float32, everything else numeric (ints, bools, float64) becomes float64.
fn float_dtype(kind: char, itemsize: usize) -> Option<&'static str> {
    match (kind, itemsize) {
        ('f', 2) | ('f', 4) => Some("float32"),
        ('f', _) | ('i', _) | ('u', _) | ('b', _) => Some("float64"),
        _ => None,
    }
}

impl<'py> Matrix<'py> {
    /// Borrows `ob` as a 2-D float matrix; `like` forces the dtype of another matrix.
    pub fn extract(ob: &Bound<'py, PyAny>, name: &str, like: Option<&Matrix>) -> PyResult<Self> {
        let py = ob.py();
        let arr = ob.cast::<numpy::PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{name}: expected a 2-D numpy array, got {}",
                ob.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{name}: expected a 2-D array, got {} dimension(s)",
                arr.ndim()
            )));
        }
        let descr = arr.dtype();
        let kind = descr.kind() as char;
        let target = match like {
            Some(Matrix::F32(_)) => Some("float32"),
            Some(Matrix::F64(_)) => Some("float64"),
            None => float_dtype(kind, descr.itemsize()),
        }
        .filter(|_| float_dtype(kind, descr.itemsize()).is_some())
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{name}: expected a real numeric array (float, int or bool), got dtype {}",
                descr.str().map(|s| s.to_string()).unwrap_or_default()
            ))
        })?;
        let req = numpy_require(py, ob, target)?;
        Ok(if target == "float32" {
            Matrix::F32(req.extract()?)
        } else {
            Matrix::F64(req.extract()?)
        })
    }

    pub fn shape(&self) -> (usize, usize) {
        let s = match self {
            Matrix::F32(a) => a.shape(),
            Matrix::F64(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

/// Borrows the contiguous data of a typed read-only array.
pub fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>) -> &'a [T] {
    a.as_slice()
        .expect("numpy.require returned a C-contiguous array")
}

/// Borrows an optional 1-D array of the same dtype.
pub fn optional_vector<'py, T: numpy::Element + Float>(
    ob: Option<&Bound<'py, PyAny>>,
    name: &str,
) -> PyResult<Option<numpy::PyReadonlyArray1<'py, T>>> {
    let Some(ob) = ob.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let req = numpy_require(ob.py(), ob, T::NAME)?;
    req.extract()
        .map(Some)
        .map_err(|_| PyValueError::new_err(format!("{name}: expected a 1-D {} array", T::NAME)))
}

/// Builds an (rows × cols) numpy array from a row-major vector, without copying it.
pub fn matrix<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    v.into_pyarray(py).reshape([rows, cols])
}

/// Builds a 1-D numpy array from a vector, without copying it.
pub fn vector<T: numpy::Element>(py: Python<'_>, v: Vec<T>) -> Bound<'_, PyArray1<T>> {
    v.into_pyarray(py)
}

/// Borrows a C-contiguous float32 matrix's data.
pub fn rows<'a>(a: &'a PyReadonlyArray2<'_, f32>, name: &str) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name}: expected a C-contiguous array")))
}

/// Borrows a contiguous int64 id array's data.
pub fn ids_slice<'a>(a: &'a numpy::PyReadonlyArray1<'_, i64>) -> PyResult<&'a [i64]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err("ids: expected a contiguous int64 array"))
}
