"""The metric registry, read once from the Rust core (``_core.metrics()``).

Every metric name, its aliases, the engines that serve it (``"exact"``, ``"tree"``,
``"approximate"`` for HNSW and IVF, ``"torch"``), and how each engine's ranking key maps to the
distance are written once, in ``knnkit-core`` (``metric/registry.rs``). The Python tables
(:mod:`knnkit.index`, :mod:`knnkit.backends.torch`, the approximate estimators) read them here,
so a name accepted by one engine means the same metric in every other.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from knnkit import _core

#: ``{name: info}`` in the registry's order; ``info`` holds ``aliases``, ``engines``,
#: ``similarity`` (larger is closer), ``dot_based``, ``uses_p``, ``exact_key`` and ``index_key``
#: (how a key maps to the distance: ``identity``, ``square``, ``power``, ``negate``,
#: ``minus_one``; ``index_key`` is ``None`` where HNSW and IVF do not serve the metric).
REGISTRY: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        name: MappingProxyType(
            {**info, "aliases": tuple(info["aliases"]), "engines": tuple(info["engines"])}
        )
        for name, info in _core.metrics().items()
    }
)

#: Every engine the registry knows (``exact``, ``tree``, ``approximate``, ``torch``).
ENGINES: tuple[str, ...] = tuple(
    dict.fromkeys(engine for entry in REGISTRY.values() for engine in entry["engines"])
)

#: Alias -> canonical name.
ALIASES: MappingProxyType[str, str] = MappingProxyType(
    {alias: name for name, info in REGISTRY.items() for alias in info["aliases"]}
)


def names(engine: str) -> tuple[str, ...]:
    """Canonical names of the metrics ``engine`` serves, in the registry's order.

    Parameters
    ----------
    engine : {"exact", "tree", "approximate", "torch"}
        The engine.

    Returns
    -------
    tuple of str
        The metric names.

    Examples
    --------
    >>> from knnkit import _metrics
    >>> _metrics.names("approximate")
    ('euclidean', 'sqeuclidean', 'inner_product', 'cosine')
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    return tuple(name for name, info in REGISTRY.items() if engine in info["engines"])


def aliases(engine: str) -> dict[str, str]:
    """Aliases of the metrics ``engine`` serves (alias -> canonical name).

    Parameters
    ----------
    engine : {"exact", "tree", "approximate", "torch"}
        The engine.

    Returns
    -------
    dict of str to str
        The aliases.
    """
    served = names(engine)
    return {alias: name for alias, name in ALIASES.items() if name in served}


def resolve(metric: Any, engine: str) -> str:
    """The canonical name of ``metric`` (a name or an alias) if ``engine`` serves it.

    Parameters
    ----------
    metric : str
        A metric name or alias.
    engine : {"exact", "tree", "approximate", "torch"}
        The engine that will compute it.

    Returns
    -------
    str
        The canonical name.

    Raises
    ------
    ValueError
        If ``metric`` is not a name or alias of a metric the engine serves; the message lists
        the engine's metrics.

    Examples
    --------
    >>> from knnkit import _metrics
    >>> _metrics.resolve("l2", "approximate")
    'euclidean'
    """
    served = names(engine)
    name = ALIASES.get(metric, metric) if isinstance(metric, str) else metric
    if not isinstance(name, str) or name not in served:
        raise ValueError(f"metric: expected one of {served}, got {metric!r}")
    return name


def info(name: str) -> MappingProxyType[str, Any]:
    """The registry entry of a canonical metric name (``KeyError`` for another name).

    Parameters
    ----------
    name : str
        A canonical name (see :func:`resolve`).

    Returns
    -------
    mapping
        The entry (see :data:`REGISTRY`).
    """
    return REGISTRY[name]


__all__ = ["ALIASES", "ENGINES", "REGISTRY", "aliases", "info", "names", "resolve"]
