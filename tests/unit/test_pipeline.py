"""docs/DESIGN.md's pipeline table against the code: every module has a stage, and imports only go from a
stage to itself or an earlier one (or to the shared helpers); nothing in the pipeline imports the daemon."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "daemon" / "claude_audit"
DESIGN = Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md"
ORDER = ["ring", "decode", "state", "record", "sinks"]


def _stages() -> dict[str, str]:
    """module -> stage, from the table under "## The pipeline" in DESIGN.md."""
    stages: dict[str, str] = {}
    for m in re.finditer(r"^\| (\w+) \| ((?:`\w+`(?:, )?)+) \|", DESIGN.read_text(), re.MULTILINE):
        for mod in re.findall(r"`(\w+)`", m.group(2)):
            stages[mod] = m.group(1)
    return stages


def _imports(path: Path) -> set[str]:
    """Package modules imported anywhere in a file (also inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
            elif node.module.startswith("claude_audit."):
                out.add(node.module.split(".")[1])
            elif node.module == "claude_audit":
                out |= {a.name for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
            out |= {a.name for a in node.names}
    return out - {"__version__"}


def test_every_module_has_a_stage() -> None:
    """Each module of the package appears in DESIGN.md's table (a new module must be placed)."""
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(_stages())


def test_imports_flow_one_way() -> None:
    """No pipeline module imports from a later stage, nor from the modules beside the pipeline."""
    stages = _stages()
    bad = []
    for path in PKG.glob("*.py"):
        stage = stages.get(path.stem)
        if stage not in ORDER:
            continue
        for dep in _imports(path):
            dep_stage = stages.get(dep)
            if dep_stage == "shared":
                continue
            if dep_stage not in ORDER or ORDER.index(dep_stage) > ORDER.index(stage):
                bad.append(f"{path.stem} ({stage}) imports {dep} ({dep_stage})")
    assert bad == []
