//! `knnkit._core`: the PyO3 extension. Glue only — array conversion, releasing the GIL, error
//! mapping; every algorithm lives in `knnkit-core`.

use pyo3::prelude::*;

mod conversion;
mod db;
mod error;
mod flat;
mod flat_index;
mod hnsw;
mod impute;
mod io;
mod ivf;
mod locked;
mod tree;

/// The SIMD instruction set the kernels dispatched to on this CPU.
#[pyfunction]
fn simd_level() -> &'static str {
    knnkit_core::simd::Simd::get().name()
}

/// The metric registry: `{name: {"aliases", "engines", "similarity", "dot_based", "uses_p",
/// "exact_key", "index_key"}}` in the registry's order (see `knnkit_core::metric::registry`).
#[pyfunction]
fn metrics(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    use knnkit_core::metric::registry::REGISTRY;
    use pyo3::types::PyDict;
    let out = PyDict::new(py);
    for m in REGISTRY {
        let info = PyDict::new(py);
        info.set_item("aliases", m.aliases.to_vec())?;
        info.set_item(
            "engines",
            m.engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
        )?;
        info.set_item("similarity", m.similarity)?;
        info.set_item("dot_based", m.dot_based)?;
        info.set_item("uses_p", m.uses_p)?;
        info.set_item("exact_key", m.exact_key.name())?;
        info.set_item("index_key", m.index_key.map(|k| k.name()))?;
        out.set_item(m.name, info)?;
    }
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(flat::knn_search, m)?)?;
    m.add_function(wrap_pyfunction!(flat::radius_search, m)?)?;
    m.add_function(wrap_pyfunction!(flat::squared_norms, m)?)?;
    m.add_function(wrap_pyfunction!(flat::to_bf16, m)?)?;
    m.add_function(wrap_pyfunction!(impute::nan_euclidean_distances, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_build, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_query, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_query_radius, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_kernel_density, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_two_point_correlation, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_class::<flat_index::Flat>()?;
    m.add_function(wrap_pyfunction!(metrics, m)?)?;
    m.add_class::<hnsw::Hnsw>()?;
    m.add_class::<ivf::Ivf>()?;
    m.add_class::<io::IndexFile>()?;
    m.add_class::<db::Db>()?;
    m.add_class::<db::Collection>()?;
    m.add_function(wrap_pyfunction!(io::write_index_file, m)?)?;
    // Private name: the stubs list public exports; users catch it as RuntimeError.
    m.add("_InternalError", m.py().get_type::<error::InternalError>())?;
    m.add_function(wrap_pyfunction!(error::_gate_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(error::_gate_before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(error::_gate_after_fork_parent, m)?)?;
    m.add_function(wrap_pyfunction!(error::_gate_after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(error::_gate_in_flight, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
