//! `knnkit._core`: the PyO3 extension. Glue only — array conversion, releasing the GIL, error
//! mapping; every algorithm lives in `knnkit-core`.

use pyo3::prelude::*;

mod conversion;
mod error;
mod flat;
mod hnsw;
mod ivf;
mod locked;
mod tree;

/// The SIMD instruction set the kernels dispatched to on this CPU.
#[pyfunction]
fn simd_level() -> &'static str {
    knnkit_core::metric::kernels::detected_level().name()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(flat::knn_search, m)?)?;
    m.add_function(wrap_pyfunction!(flat::radius_search, m)?)?;
    m.add_function(wrap_pyfunction!(flat::squared_norms, m)?)?;
    m.add_function(wrap_pyfunction!(flat::to_bf16, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_build, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_query, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_query_radius, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_kernel_density, m)?)?;
    m.add_function(wrap_pyfunction!(tree::tree_two_point_correlation, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_class::<hnsw::Hnsw>()?;
    m.add_class::<ivf::Ivf>()?;
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
