"""The command line: the demo runs end to end and agrees with scikit-learn; info reads files."""

from __future__ import annotations

import numpy as np

import knnkit
from knnkit.cli import main


def test_demo_runs_and_matches_scikit_learn(capsys):
    assert main(["demo", "--quick"]) == 0  # non-zero if any prediction differed
    out = capsys.readouterr().out
    assert "same predictions: True" in out and "best K" in out


def test_info_describes_an_index(tmp_path, capsys):
    ix = knnkit.FlatIndex(3, metric="cosine")
    ix.add(np.eye(3, dtype=np.float32))
    ix.save(tmp_path / "ix.knn")
    assert main(["info", str(tmp_path / "ix.knn")]) == 0
    assert "ntotal=3" in capsys.readouterr().out
