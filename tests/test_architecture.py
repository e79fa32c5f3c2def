"""The layout's rules, checked on the source: imports only run downward, the core never imports the
trainer, and every sub-package says in one line what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

CORE = REPO / "clnsod_core"
# Bottom to top: a module may import from its own part or from parts of a lower rank only.
RANKS = {
    "options": 0, "arrays": 0, "files": 0, "folders": 0,
    "runtime": 1, "network": 1,
    "weights": 2, "imaging": 2,
    "masking": 3,
    "compositing": 4,
    "replace": 5,
    "jobs": 6, "video": 6,
    "frontends": 7,
}


def _part(module: str) -> str:
    """'clnsod_core.masking.matte' -> 'masking'; the package itself -> ''."""
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in the file (also inside functions), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
    return found


def test_every_part_of_the_core_has_a_rank() -> None:
    parts = {p.stem if p.is_file() else p.name for p in CORE.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert parts == set(RANKS)


def test_imports_only_run_downward_and_never_reach_the_trainer() -> None:
    problems = []
    for path in sorted(CORE.rglob("*.py")):
        here = _module_name(path)
        for line, target in _imports(path):
            where = f"{path.relative_to(REPO)}:{line} imports {target}"
            if target.split(".")[0] in ("trainer", "benchmarks", "tests"):
                problems.append(where + " (the core must not import it)")
            elif target.startswith("clnsod_core.") and here != "clnsod_core":
                source, dest = _part(here), _part(target)
                if source != dest and RANKS[dest] >= RANKS[source]:
                    problems.append(f"{where} ({dest} is not below {source})")
            elif target.startswith("clnsod_core") and here == "clnsod_core":
                problems.append(where + " (the package root holds only the version)")
    assert not problems, "\n".join(problems)


def test_each_sub_package_says_what_it_is_for() -> None:
    for init in CORE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and doc.strip(), f"{init.relative_to(REPO)} has no docstring"
