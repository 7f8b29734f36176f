"""The API reference: HTML from the docstrings (pdoc) into build/api, and a check that every reference in them names
something.

    .venv/bin/python scripts/api_docs.py            # build build/api/ and check (make api-docs)
    .venv/bin/python scripts/api_docs.py --check    # the check alone (no pdoc needed)

A reference is a dotted name in double backticks that starts with ``edgeflower.`` (``edgeflower.api.Run``,
``edgeflower.training.loop.TrainConfig``): it must import, attribute by attribute. A docstring that names a renamed
or removed thing fails, with the module and the name. Exit status 1 on any broken reference.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the pages of the reference: the library's entry points and what their results are made of
MODULES = ["edgeflower", "edgeflower.api", "edgeflower.errors", "edgeflower.edge.classifier",
           "edgeflower.training.loop", "edgeflower.exporting.pipeline", "edgeflower.benchmarking"]
REFERENCE = re.compile(r"``(edgeflower(?:\.[A-Za-z_][A-Za-z0-9_]*)+)``")


def resolves(dotted: str) -> bool:
    """``a.b.C.attr``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def docstrings(module) -> list[tuple[str, str]]:
    """(where, docstring) of the module, its classes, functions and methods defined in it."""
    out = [(module.__name__, inspect.getdoc(module) or "")]
    for name, obj in vars(module).items():
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module.__name__:
            out.append((f"{module.__name__}.{name}", inspect.getdoc(obj) or ""))
            if inspect.isclass(obj):
                out += [(f"{module.__name__}.{name}.{m}", inspect.getdoc(f) or "")
                        for m, f in vars(obj).items() if inspect.isfunction(f)]
    return out


def broken_references(modules: list[str] = MODULES) -> list[str]:
    bad = []
    for m in modules:
        for where, doc in docstrings(importlib.import_module(m)):
            bad += [f"{where}: ``{ref}`` names nothing" for ref in REFERENCE.findall(doc) if not resolves(ref)]
    return bad


def build(out: Path) -> list[str]:
    """The HTML pages; pdoc's own warnings (a name in ``__all__`` or a link that does not resolve) are returned."""
    import warnings

    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="restructuredtext", footer_text="edgeflower")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the root package re-exports the API lazily (module __getattr__), which pdoc cannot follow: its page is
        # edgeflower.api's
        pdoc.pdoc(*[m for m in MODULES if m != "edgeflower"], output_directory=out)
    return [f"pdoc: {w.message}" for w in caught]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="Check the references only (no HTML).")
    ap.add_argument("--out", default=str(ROOT / "build" / "api"))
    args = ap.parse_args()
    bad = broken_references()
    if not args.check:
        bad += build(Path(args.out))
        print(f"API reference written to {args.out}/index.html")
    for line in bad:
        print(f"broken reference: {line}", file=sys.stderr)
    if bad:
        raise SystemExit(1)
    print(f"references checked in {len(MODULES)} modules: none broken")


if __name__ == "__main__":
    main()
