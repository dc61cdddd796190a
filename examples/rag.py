"""Retrieval over the Linux man pages with ``knnkit.Store``: chunk, embed, store, query, evaluate.

The corpus is real text that is on a Debian or Ubuntu machine without any network: the Linux
man-pages project (Debian packages ``manpages`` and ``manpages-dev``: system calls, the C
library, devices, file formats, overviews; about 1,100 pages). ``make rag`` installs them when
they are missing (``apt-get install manpages manpages-dev``, as root or through sudo). Without
them the example falls back to the docstrings of Python's standard library (read from its
source files with ``ast``: nothing is imported).

Steps:

1. **Read** each page's groff source (``.gz``) directly (no ``man`` process per page: that
   costs ~0.3 s a page), keeping the text of its sections; symbolic links and ``.so``
   redirections (aliases of another page) are skipped.
2. **Chunk**: whole paragraphs, in page order, are gathered into chunks of about 100 words
   (at most 140: the embedder reads 256 word pieces, and man-page prose, full of identifiers,
   runs at about 1.7 pieces a word; 90 % of the chunks fit), each headed by
   ``page(section), SECTION:`` so that a chunk carries its context, as retrieval systems
   commonly do. Boilerplate sections shared by hundreds of pages (LIBRARY, ATTRIBUTES) and
   cross-references (SEE ALSO) are left out.
3. **Embed** with ``knnkit.embed.MiniLM()`` (all-MiniLM-L6-v2, offline, on the CPU) and
   **store** in a ``knnkit.Store`` collection (HNSW, cosine) with documents and metadata
   (``page``, ``section``, ``heading``).
4. **Evaluate**: each page's NAME line says what the page is about in a few words
   ("open, openat, creat \\- open and possibly create a file"). The text after ``\\-`` is the
   query and the page is the answer: a hit at k when any of the top-k chunks comes from that
   page; recall@1/5/10 over all pages, for the modes ``vector`` (embeddings), ``text`` (BM25)
   and ``hybrid`` (both, fused). Modes the installed knnkit lacks print ``n/a``.

Why the NAME section is left out of the index: the query *is* the NAME line, so a chunk holding
it would match word for word and every mode would score near 1.0, measuring string equality
rather than retrieval. Without it, the query is a one-line summary that must find the page's
body text (the DESCRIPTION mostly paraphrases it), which is how a user's question meets
documentation. The page names stay in the chunk headings: the query never contains them
(only the summary after ``\\-``), and real chunking keeps titles. About 8 % of the pages share
their summary word for word with another page (``fork(2)`` and ``clone(2)``: "create a child
process"); a query cannot tell those apart, so any page with that summary is an answer.

Usage::

    python examples/rag.py [--store DIR] [--max-pages N] [--k 10] [--corpus man|python]
                           [--index hnsw|flat] [--cache DIR]

``--max-pages`` caps the pages (a seeded sample) to bound the embedding time on a small
machine; timings (embedding, ingest, queries) are printed with the sizes used. ``--cache DIR``
keeps the chunks' vectors (keyed by their text), so a rerun, say with another ``--index`` or
once more query modes exist, skips the embedding.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAN_ROOT = Path("/usr/share/man")
MAN_PACKAGES = ("manpages", "manpages-dev")
# The sections the two packages fill (1 and 8 hold a few of theirs too; elsewhere on a
# system those directories are full of other packages' pages, so they are read only through
# dpkg's file list).
MAN_SECTIONS = ("2", "3", "4", "5", "7")
# NAME is the query (see above); the others are cross-references, credits and boilerplate
# shared by hundreds of pages ("Standard C library (libc, -lc)", thread-safety tables).
SKIP_HEADINGS = {
    "NAME", "SEE ALSO", "COLOPHON", "AUTHORS", "AUTHOR", "REPORTING BUGS", "LIBRARY", "ATTRIBUTES",
}  # fmt: skip
CHUNK_WORDS = 100
MAX_CHUNK_WORDS = 140
MODES = ("vector", "text", "hybrid")
INSTALL_HINT = (
    "the Linux man pages are not installed: `make rag` installs them, or run "
    "`sudo apt-get install manpages manpages-dev` (in a Docker image that excludes "
    "documentation, remove /etc/dpkg/dpkg.cfg.d/excludes first)"
)


@dataclass
class Page:
    name: str  # e.g. "open"
    section: str  # e.g. "2"
    summary: str  # the NAME line's text after "\-": the query
    sections: list[tuple[str, list[str]]] = field(default_factory=list)  # heading, paragraphs

    @property
    def key(self) -> str:
        return f"{self.name}({self.section})"


# --- groff (man(7) macros) to text ----------------------------------------------------------

_SPECIAL = {
    "em": "—", "en": "–", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'",
    "bu": "•", "co": "©", "rg": "®", "tm": "™", "mu": "×", "di": "÷", "+-": "±", "<=": "≤",
    ">=": "≥", "!=": "≠", "->": "→", "<-": "←", "hy": "-", "ti": "~", "ha": "^", "rs": "\\",
    "ga": "`", "sl": "/", "ba": "|", "br": "|", "dg": "†", "de": "°", "Fo": "«", "Fc": "»",
}  # fmt: skip
_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\[[^\]]*\]|\(..|.)        # font changes
      | \((?P<two>..)                 # \(xx special characters
      | \[(?P<long>[^\]]*)\]          # \[xxx] special characters
      | \*(?:\[[^\]]*\]|\(..|.)       # strings
      | s[-+]?\d                      # size changes
      | n(?:\[[^\]]*\]|\(..|.)        # number registers
      | [kz].                         # marks, zero-width
      | [hvwl]'[^']*'                 # motions, widths, lines
      | (?P<char>.)                   # one-character escapes
    )""",
    re.VERBOSE,
)
_ONE_CHAR = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "'": "'"}


def _unescape(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group("two") is not None:
            return _SPECIAL.get(m.group("two"), "")
        if m.group("long") is not None:
            return _SPECIAL.get(m.group("long"), "")
        if m.group("char") is not None:
            return _ONE_CHAR.get(m.group("char"), "")
        return ""

    return _ESCAPE.sub(sub, text)


def _args(rest: str) -> list[str]:
    """A macro's arguments: blank-separated, "double quoted" ones may hold blanks."""
    out: list[str] = []
    for m in re.finditer(r'"((?:[^"]|"")*)"?|(\S+)', rest):
        out.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2))
    return out


_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_FONT = {"B", "I", "SM", "SB"}
_BREAKS = {"PP", "P", "LP", "sp", "TP", "TQ", "IP", "HP", "RS", "RE", "EX", "EE", "nf", "fi"}
_SECTION_RE = re.compile(r"\.(\d)\w*\.gz$")


def parse_man(text: str, name: str, section: str) -> Page | None:
    """A page from its groff source; None for an alias (``.so``) or a page without a NAME
    summary."""
    lines = text.replace("\\\n", "").splitlines()
    page = Page(name, section, "")
    heading = ""
    paragraphs: list[str] = []
    current: list[str] = []
    in_table = table_format = False

    def flush_paragraph() -> None:
        if current:
            para = " ".join(" ".join(current).split())
            if para:
                paragraphs.append(para)
            current.clear()

    def flush_section() -> None:
        flush_paragraph()
        if heading:
            page.sections.append((heading, list(paragraphs)))
        paragraphs.clear()

    for raw in lines:
        if raw.startswith(('.\\"', "'\\\"")):
            continue
        line = raw.split('\\"', 1)[0] if '\\"' in raw else raw
        if in_table:
            if line.startswith(".TE"):
                in_table = False
                flush_paragraph()
            elif table_format:
                table_format = not line.rstrip().endswith(".")
            elif not line.startswith("."):
                current.append(
                    _unescape(line.replace("\t", " ")).replace("T{", "").replace("T}", "")
                )
            continue
        if line.startswith((".", "'")):
            m = re.match(r"[.']\s*(\S+)\s*(.*)", line)
            if not m:
                continue
            macro, rest = m.group(1), m.group(2)
            if macro == "so":
                return None
            if macro in ("SH", "SS"):
                title = " ".join(_unescape(a) for a in _args(rest)).strip()
                if macro == "SH":
                    flush_section()
                    heading = title.upper()
                else:
                    flush_paragraph()
                    current.append(title + ":")
            elif macro in _ALTERNATING:
                current.append("".join(_unescape(a) for a in _args(rest)))
            elif macro in _FONT:
                current.append(" ".join(_unescape(a) for a in _args(rest)))
            elif macro in ("TS",):
                flush_paragraph()
                in_table = table_format = True
            elif macro == "UR":
                current.append(_unescape(rest))
            elif macro in _BREAKS:
                if macro not in ("RS", "RE", "nf", "fi"):
                    flush_paragraph()
                if macro == "IP":
                    tag = _args(rest)
                    if tag and tag[0] not in ("\\(bu", "*", "-"):
                        current.append(_unescape(tag[0]))
            continue
        current.append(_unescape(line))
    flush_section()
    for heading_, paras in page.sections:
        if heading_ == "NAME":
            name_line = " ".join(paras)
            if " - " in name_line:
                page.summary = name_line.split(" - ", 1)[1].strip()
    page.sections = [(h, p) for h, p in page.sections if h not in SKIP_HEADINGS]
    if not page.summary or not page.sections:
        return None
    return page


def man_files(sections: tuple[str, ...] = MAN_SECTIONS) -> list[Path]:
    """The pages of the packages ``manpages`` and ``manpages-dev`` (dpkg's file list when
    dpkg is here; else the section directories), symbolic links (aliases) left out."""
    files: list[Path] = []
    if shutil.which("dpkg-query"):
        out = subprocess.run(
            ["dpkg-query", "-L", *MAN_PACKAGES], capture_output=True, text=True, check=False
        ).stdout
        files = [Path(p) for p in out.split() if re.search(r"/man/man\d/[^/]+\.gz$", p)]
    if not files:
        for s in sections:
            files.extend((MAN_ROOT / f"man{s}").glob(f"*.{s}.gz"))
    return sorted({p for p in files if p.is_file() and not p.is_symlink()})


def read_man_pages(max_pages: int | None, seed: int) -> list[Page]:
    files = man_files()
    pages = []
    for path in files:
        m = _SECTION_RE.search(path.name)
        if not m:
            continue
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        page = parse_man(text, path.name[: m.start()], m.group(1))
        if page is not None:
            pages.append(page)
    return _sample(pages, max_pages, seed)


def _sample(pages: list[Page], max_pages: int | None, seed: int) -> list[Page]:
    if max_pages is not None and len(pages) > max_pages:
        pages = sorted(random.Random(seed).sample(pages, max_pages), key=lambda p: p.key)
    return pages


# --- fallback: the standard library's docstrings --------------------------------------------

_STDLIB_SKIP = {"test", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "site-packages"}


def read_python_docs(max_pages: int | None, seed: int, root: Path | None = None) -> list[Page]:
    """Public functions and classes of the standard library (or of the sources under
    ``root``) with a docstring of a summary line and a body: the summary is the query, the
    body the text."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    pages = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if (
            not parts
            or set(parts) & _STDLIB_SKIP
            or any(p.startswith(("_", "test")) for p in parts)
        ):
            continue
        module = ".".join(parts)
        try:
            tree = ast.parse(path.read_text("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            summary, _, body = doc.partition("\n")
            body_words = body.split()
            if len(summary.split()) < 4 or len(body_words) < 20:
                continue
            paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]
            pages.append(
                Page(f"{module}.{node.name}", "py", summary.strip(), [("DESCRIPTION", paras)])
            )
    return _sample(pages, max_pages, seed)


# --- chunking, indexing, evaluation --------------------------------------------------------


def chunk(page: Page) -> list[tuple[str, str]]:
    """(heading, text) chunks of about CHUNK_WORDS words (at most MAX_CHUNK_WORDS): whole
    paragraphs gathered in page order, a short section running on into the next (its heading
    inline), a long paragraph cut. Each chunk's heading is that of its first words."""
    out: list[tuple[str, str]] = []
    words: list[str] = []
    first = ""

    def emit() -> None:
        nonlocal words
        if words:
            out.append((first, f"{page.key}, {first}: " + " ".join(words)))
            words = []

    for heading, paras in page.sections:
        for i, para in enumerate(paras):
            pw = para.split()
            if i == 0 and words:
                pw = [f"{heading}:", *pw]  # a section starting inside a chunk
            if words and len(words) + len(pw) > MAX_CHUNK_WORDS:
                emit()
                if i == 0:
                    pw = pw[1:]
            while pw:
                if not words:
                    first = heading
                room = MAX_CHUNK_WORDS - len(words)
                words += pw[:room]
                pw = pw[room:]
                if len(words) >= CHUNK_WORDS:
                    emit()
    emit()
    return out


def answers_of(pages: list[Page]) -> list[set[str]]:
    """For each page, the pages whose NAME summary is the same text as its own (itself, and
    the few others that share it: a query cannot tell those apart)."""
    by_summary: dict[str, set[str]] = {}
    for p in pages:
        by_summary.setdefault(p.summary, set()).add(p.key)
    return [by_summary[p.summary] for p in pages]


def recall_at(
    hits: list[list[str]], answers: list[set[str]], ks: tuple[int, ...]
) -> dict[int, float]:
    """Share of queries with an answer page among the pages of their top-k chunks."""
    return {
        k: float(np.mean([bool(a & set(h[:k])) for h, a in zip(hits, answers, strict=True)]))
        for k in ks
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="store directory (default: a temporary one)")
    ap.add_argument("--corpus", choices=("auto", "man", "python"), default="auto")
    ap.add_argument("--max-pages", type=int, default=None, help="cap on pages (seeded sample)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="embedder device (default: cpu)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--index", choices=("hnsw", "flat"), default="hnsw")
    ap.add_argument(
        "--cache", help="directory keeping the chunks' vectors between runs (keyed by the text)"
    )
    args = ap.parse_args(argv)

    import knnkit
    from knnkit.embed import MiniLM

    t0 = time.perf_counter()
    pages: list[Page] = []
    if args.corpus in ("auto", "man"):
        pages = read_man_pages(args.max_pages, args.seed)
        if not pages:
            print(f"note: {INSTALL_HINT}", file=sys.stderr)
            if args.corpus == "man":
                return 2
    corpus = "Linux man pages (manpages, manpages-dev)"
    if not pages:
        pages = read_python_docs(args.max_pages, args.seed)
        corpus = "Python standard library docstrings"
    if not pages:
        print("no corpus found", file=sys.stderr)
        return 2
    chunks = [(p, h, t) for p in pages for h, t in chunk(p)]
    t_read = time.perf_counter() - t0
    n_words = sum(len(t.split()) for _, _, t in chunks)
    print(f"corpus: {corpus}: {len(pages)} pages, {len(chunks)} chunks, {n_words} words "
          f"(read and chunked in {t_read:.1f} s)")  # fmt: skip

    embedder = MiniLM(device=args.device, batch_size=args.batch_size)
    t0 = time.perf_counter()
    embedder(["warm up"])
    t_load = time.perf_counter() - t0
    texts = [t for _, _, t in chunks]
    cache = None
    if args.cache:
        digest = hashlib.sha1("\0".join(texts).encode()).hexdigest()[:16]
        cache = Path(args.cache) / f"{embedder.name}-{digest}.npy"
    if cache is not None and cache.is_file():
        vectors = np.load(cache)
        print(f"embed: model loaded in {t_load:.1f} s; {len(chunks)} chunk vectors read "
              f"from {cache}")  # fmt: skip
    else:
        t0 = time.perf_counter()
        vectors = embedder(texts)
        t_embed = time.perf_counter() - t0
        print(f"embed: model loaded in {t_load:.1f} s; {len(chunks)} chunks in {t_embed:.1f} s "
              f"({len(chunks) / t_embed:.1f} chunks/s, {args.device or 'cpu'}, "
              f"{os.cpu_count()} CPUs)")  # fmt: skip
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, vectors)

    tmp = db = col = None
    path = args.store
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="knnkit-rag-")
        path = tmp.name
    try:
        db = knnkit.Store(path)
        if "man" in db.list_collections():
            db.delete_collection("man")
        col = db.create_collection("man", metric="cosine", index=args.index, embedder=embedder)
        ids = [f"{p.key}#{i}" for i, (p, _, _) in enumerate(chunks)]
        meta = [{"page": p.name, "section": p.section, "heading": h} for p, h, _ in chunks]
        t0 = time.perf_counter()
        for s in range(0, len(chunks), 1000):
            col.add(
                ids[s : s + 1000],
                vectors=vectors[s : s + 1000],
                metadata=meta[s : s + 1000],
                documents=[t for _, _, t in chunks[s : s + 1000]],
            )
        t_ingest = time.perf_counter() - t0
        print(f"ingest: {len(col)} records in {t_ingest:.1f} s "
              f"({len(chunks) / t_ingest:.0f} records/s, batches of 1,000, durable)")  # fmt: skip

        queries = [p.summary for p in pages]
        answers = answers_of(pages)
        t0 = time.perf_counter()
        embedder(queries)
        t_qembed = time.perf_counter() - t0
        print(f"queries: {len(queries)} NAME summaries, embedded in {t_qembed:.1f} s "
              f"({1000 * t_qembed / len(queries):.1f} ms each)")  # fmt: skip
        shared = sum(len(a) > 1 for a in answers)
        print(f'example: "{queries[0]}" -> {pages[0].key}; {shared} pages share their summary '
              "with another page (either counts as the answer)")  # fmt: skip

        ks = tuple(k for k in (1, 5, 10) if k <= args.k)
        print(
            f"\n{'mode':<8}"
            + "".join(f"  recall@{k:<3}" for k in ks)
            + "  ms/query (incl. embedding)"
        )
        results = {}
        for mode in MODES:
            try:
                t0 = time.perf_counter()
                res = col.query(texts=queries, k=args.k, mode=mode, include=("metadata",))
                dt = time.perf_counter() - t0
            except (NotImplementedError, ValueError, TypeError) as e:
                print(f"{mode:<8}" + "".join(f"  {'n/a':<10}" for _ in ks) + f"  ({e})")
                continue
            hits = [[f"{m['page']}({m['section']})" for m in ms] for ms in res.metadata]
            r = recall_at(hits, answers, ks)
            results[mode] = r
            print(f"{mode:<8}" + "".join(f"  {r[k]:<10.3f}" for k in ks)
                  + f"  {1000 * dt / len(queries):.2f}")  # fmt: skip
        if "vector" in results:
            first = col.query(texts=[queries[0]], k=3)
            print(f"\ntop 3 for {queries[0]!r}:")
            for i, d, doc in zip(first.ids[0], first.distances[0], first.documents[0], strict=True):
                print(f"  {d:.3f} {i}: {doc[:100]}...")
    finally:
        if tmp is not None:
            db = col = None  # closes the store before its directory goes
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
