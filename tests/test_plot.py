"""knnkit.plot renders with the Agg backend; each plot shows what it claims."""

from __future__ import annotations

import io

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from knnkit import plot  # noqa: E402
from knnkit.model_selection import select_k  # noqa: E402
from knnkit.neighbors import (  # noqa: E402
    KNeighborsClassifier,
    KNeighborsRegressor,
    RadiusNeighborsClassifier,
)

SEED = 0


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def png_bytes(ax) -> bytes:
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=50)
    data = buffer.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    return data


def test_decision_boundary_classifier():
    X, y = make_blobs(60, centers=3, random_state=SEED)
    labels = np.array(["red", "green", "blue"])[y]
    clf = KNeighborsClassifier(5).fit(X, labels)
    ax = plot.decision_boundary(clf, X, labels, grid_resolution=50)
    png_bytes(ax)
    assert ax.get_title() == "KNeighborsClassifier"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["blue", "green", "red"]
    # the filled regions are what the classifier predicts: class i's region (level i) holds
    # the points predicted as class i (all but a few on the grid's resolution at boundaries)
    regions = ax.collections[0]
    assert len(regions.levels) == 4  # three classes
    codes = np.searchsorted(clf.classes_, clf.predict(X))
    for i, path in enumerate(regions.get_paths()):
        inside = path.contains_points(X)
        assert np.mean(inside[codes == i]) >= 0.9 and np.mean(inside[codes != i]) <= 0.1
    assert len(ax.collections) == 4  # the regions and one scatter per class
    x_lo, x_hi = ax.get_xlim()
    assert x_lo == pytest.approx(X[:, 0].min() - 0.5) and x_hi == pytest.approx(X[:, 0].max() + 0.5)
    # an unfitted estimator is fitted on a clone; the one passed stays unfitted
    fresh = KNeighborsClassifier(3)
    fig, given = plt.subplots()
    out = plot.decision_boundary(fresh, X, y, ax=given, grid_resolution=20, title="k=3")
    assert out is given and out.get_title() == "k=3"
    assert not hasattr(fresh, "classes_")
    # an outlier label that is not a class still gets a colour
    radius = RadiusNeighborsClassifier(radius=0.5, outlier_label=-1).fit(X, y)
    with pytest.warns(UserWarning, match="Outlier label -1 is not in training classes"):
        ax = plot.decision_boundary(radius, X, y, grid_resolution=30)
    assert len(ax.get_legend().get_texts()) == 3  # legend: classes that have points
    png_bytes(ax)


def test_decision_boundary_regressor_and_errors():
    rng = np.random.RandomState(SEED)
    X = rng.rand(40, 2)
    y = X[:, 0] * 3 + X[:, 1]
    ax = plot.decision_boundary(KNeighborsRegressor(4), X, y, grid_resolution=30)
    png_bytes(ax)
    assert len(ax.figure.axes) == 2  # the plot and its colour bar
    assert ax.figure.axes[1].get_ylabel() == "prediction"
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        plot.decision_boundary(KNeighborsClassifier(1), rng.rand(10, 3), np.arange(10) % 2)
    with pytest.raises(ValueError, match="one label per row"):
        plot.decision_boundary(KNeighborsClassifier(1), rng.rand(10, 2), np.arange(9))
    with pytest.raises(ValueError, match="grid_resolution"):
        plot.decision_boundary(KNeighborsClassifier(1), X, y > 2, grid_resolution=1)


def test_k_curve():
    X, y = make_blobs(120, centers=3, cluster_std=3.0, random_state=SEED)
    table = select_k(X, y, ks=[1, 3, 9, 27, 63], cv=3)
    ax = plot.k_curve(table)
    png_bytes(ax)
    line = ax.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), table.ks)
    np.testing.assert_array_equal(line.get_ydata(), table.mean_scores)
    assert ax.get_title() == f"Choosing K (best K = {table.best_k})"
    assert ax.get_xlabel() == "K (number of neighbours)"
    assert ax.get_ylabel() == "cross-validated accuracy"
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "small K" in texts and "high variance" in texts and "overfit" in texts
    assert "large K" in texts and "high bias" in texts and "underfit" in texts
    with pytest.raises(TypeError, match="select_k"):
        plot.k_curve({"ks": [1, 2]})


def test_curse_of_dimensionality():
    fig, given = plt.subplots()
    ax = plot.curse_of_dimensionality(dims=[1, 4, 32, 256], n=300, seed=1, ax=given)
    assert ax is given
    png_bytes(ax)
    dims, ratios = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    np.testing.assert_array_equal(dims, [1, 4, 32, 256])
    assert np.all(np.diff(ratios) > 0), ratios  # the nearest and farthest become alike
    assert ratios[0] < 0.05 and 0.6 < ratios[-1] < 1.0
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "dimension"
    again = plot.curse_of_dimensionality(dims=[1, 4, 32, 256], n=300, seed=1)
    np.testing.assert_array_equal(again.lines[0].get_ydata(), ratios)  # seeded
    with pytest.raises(ValueError, match="dims"):
        plot.curse_of_dimensionality(dims=[0, 3])
    with pytest.raises(ValueError, match="dims"):
        plot.curse_of_dimensionality(dims=[1.5])
    with pytest.raises(ValueError, match="n must be at least 2"):
        plot.curse_of_dimensionality(n=1)
