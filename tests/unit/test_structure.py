"""The shape of the code base: who may import whom, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAEMONS = ("master", "remote_model_puller", "config_manager", "tfserving", "gateway", "jobs")
PACKAGES = ("modelsync", "cli", *DAEMONS)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path, name: str) -> set[str]:
    """Every project module ``path`` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {
        name: {m for m in imports(path, name) if m in mods and m != name}
        for name, path in mods.items()
    }


def test_the_shared_library_imports_no_daemon_and_no_cli() -> None:
    bad = {
        (m, i)
        for m, deps in graph().items()
        if m.split(".")[0] == "modelsync"
        for i in deps
        if i.split(".")[0] != "modelsync"
    }
    assert not bad, f"modelsync/ must know no daemon: {sorted(bad)}"


def test_daemons_never_import_each_other() -> None:
    bad = {
        (m, i)
        for m, deps in graph().items()
        if m.split(".")[0] in DAEMONS
        for i in deps
        if i.split(".")[0] not in (m.split(".")[0], "modelsync")
    }
    assert not bad, f"a daemon imports another daemon or the CLI: {sorted(bad)}"


def test_no_import_cycles() -> None:
    g = graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for dep in sorted(g.get(node, ())):
            # a package importing its own submodule is not a cycle through the package
            if dep.startswith(node + "."):
                continue
            visit(dep, [*stack, node])
        done.add(node)

    for name in sorted(g):
        visit(name, [])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_create_app_is_small() -> None:
    tree = ast.parse((ROOT / "master" / "app.py").read_text())
    fn = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "create_app"
    )
    assert fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 < 80


def test_the_checker_sees_imports() -> None:
    """The checks above would pass vacuously if imports were not found."""
    g = graph()
    assert "modelsync.store" in g["remote_model_puller.installer"]
    assert "master.state" in g["master.app"] or "master.state" in g["master.api"]
    assert "modelsync.lifecycle" in g["modelsync.nodedaemon"]
