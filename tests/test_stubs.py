"""The type stubs of the extension match what it exports: names, parameters, class methods."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import knnkit
from knnkit import _core


def _params(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in node.args.args if a.arg not in ("self", "cls")]


def _stubs() -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    tree = ast.parse(Path(knnkit.__file__).with_name("_core.pyi").read_text())
    functions = {n.name: _params(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {
        n.name: {m.name: _params(m) for m in n.body if isinstance(m, ast.FunctionDef)}
        for n in tree.body
        if isinstance(n, ast.ClassDef)
    }
    return functions, classes


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))}


def test_every_export_has_a_matching_stub():
    functions, classes = _stubs()
    exported = _public(_core)
    assert exported == set(functions) | set(classes), (
        f"exported {sorted(exported)}, stubbed {sorted(functions)} + {sorted(classes)}"
    )
    for name, params in functions.items():
        real = list(inspect.signature(getattr(_core, name)).parameters)
        assert real == params, f"{name}: runtime {real} vs stub {params}"


def test_every_class_method_has_a_matching_stub():
    _, classes = _stubs()
    for cls_name, methods in classes.items():
        cls = getattr(_core, cls_name)
        public = _public(cls)
        stubbed = {m for m in methods if not m.startswith("_")}
        assert public == stubbed, f"{cls_name}: runtime {sorted(public)} vs stub {sorted(stubbed)}"
        for name, params in methods.items():
            if name.startswith("__") and name != "__init__":
                continue
            target = cls if name == "__init__" else getattr(cls, name)
            real = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
            assert real == params, f"{cls_name}.{name}: runtime {real} vs stub {params}"
