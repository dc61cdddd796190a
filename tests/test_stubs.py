"""The type stubs of the extension match what it exports, names and parameters."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import knnkit
from knnkit import _core


def _stub_functions() -> dict[str, list[str]]:
    tree = ast.parse(Path(knnkit.__file__).with_name("_core.pyi").read_text())
    return {
        node.name: [a.arg for a in node.args.args]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_every_export_has_a_matching_stub():
    stubs = _stub_functions()
    exported = {
        name for name in dir(_core) if not name.startswith("_") and callable(getattr(_core, name))
    }
    assert exported == set(stubs), f"exported {sorted(exported)}, stubbed {sorted(stubs)}"
    for name, params in stubs.items():
        real = list(inspect.signature(getattr(_core, name)).parameters)
        assert real == params, f"{name}: runtime {real} vs stub {params}"
