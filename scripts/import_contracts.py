"""An import-linter contract type that the built-in ones cannot express: no import of some modules at module
level (inside a function is fine). `edgeflower --help` must start without loading TensorFlow, Keras or the
runtime: the CLI imports its subcommands' packages only when a subcommand runs.

Registered in pyproject.toml's [tool.importlinter] as ``contract_types = top_level_imports: scripts.import_contracts.
TopLevelImportsContract`` (lint-imports puts the working directory on sys.path).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from importlinter import Contract, ContractCheck, fields, output


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: at the top, or under a module-level if / try / with."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for name in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, name, []) or [])
            for h in getattr(node, "handlers", []) or []:
                todo.extend(h.body)


def _imported_names(node, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


class TopLevelImportsContract(Contract):
    type_name = "top_level_imports"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    forbidden_modules = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        forbidden = [m.name for m in self.forbidden_modules]
        broken = []
        for src in self.source_modules:
            spec = importlib.util.find_spec(src.name)
            if spec is None or not spec.origin:
                broken.append((src.name, 0, "(module not found)"))
                continue
            package = src.name.rpartition(".")[0] if not spec.submodule_search_locations else src.name
            tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
            for node in _module_level_imports(tree):
                for name in _imported_names(node, package):
                    if any(name == f or name.startswith(f + ".") for f in forbidden):
                        broken.append((src.name, node.lineno, name))
                        break
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for src, line, name in check.metadata["broken"]:
            output.print_error(f"{src}:{line} imports {name} at module level (import it inside the function "
                               "that needs it)", bold=False)
            output.new_line()
