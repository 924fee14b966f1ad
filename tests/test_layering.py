"""The import graph of the project's packages: floors that only look down, no cycle (README, Layout).

Every module's imports are parsed (module level and inside functions alike), so a function-level import
cannot hide an upward arrow or a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "datasets", "utils")
LEAVES = {"utils", "utils.io", "utils.logging", "utils.device", "utils.segment_ops", "utils.config", "utils.cli",
          "utils.video", "utils.cpu", "utils.distributed"}
# floor of each module: a module may import its own floor (no cycle) or a lower one; models and datasets
# share floor 1 but never import each other
FLOORS = {"leaf": 0, "models": 1, "datasets": 1, "scoring": 2, "engine": 3}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    if module.startswith("utils.scoring"):
        return "scoring"
    if module.startswith("utils.engine"):
        return "engine"
    top = module.split(".")[0]
    if top in ("models", "datasets"):
        return top
    raise AssertionError(f"{module}: no floor assigned (add it to LEAVES or a package of its own)")


def project_imports(path: Path, known: set[str], package: str) -> set[str]:
    """The project modules `path` (a module of `package`) imports: `from p import name` counts `p.name` when
    that is a module, else `p` itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    known = {module_name(path) for path in paths}
    graph = {}
    for path in paths:
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = {dep for dep in project_imports(path, known, package) if dep != module}
    return graph


def test_every_arrow_points_down_and_models_and_datasets_never_meet():
    graph = import_graph()
    wrong = []
    for module, deps in graph.items():
        for dep in deps:
            here, there = floor_of(module), floor_of(dep)
            if FLOORS[there] > FLOORS[here] or {here, there} == {"models", "datasets"}:
                wrong.append(f"{module} ({here}) -> {dep} ({there})")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_parser_sees_function_level_and_relative_imports(tmp_path):
    """So that the checks above can fail: an import inside a function and a relative import are found."""
    source = tmp_path / "probe.py"
    source.write_text("from . import windows as T\n\ndef f():\n    from utils.engine.loop import predict\n",
                      encoding="utf-8")
    known = {"utils", "utils.engine", "utils.engine.loop", "datasets", "datasets.windows"}
    assert project_imports(source, known, "datasets") == {"utils.engine.loop", "datasets.windows"}


def test_library_loggers_are_under_the_run_logger():
    """'loading CLIP', cache and generation messages reach the run's console and log file (utils/logging.py)."""
    import logging

    import models.text_encoder
    from utils.logging import LOGGER_NAME

    assert models.text_encoder.logger.name.startswith(LOGGER_NAME + ".")
    assert models.text_encoder.logger.parent is logging.getLogger(LOGGER_NAME)
