"""The dependency rule of ARCHITECTURE.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "orthanc_py"

LAYER = {
    "errors": 0,
    "config": 0,
    "model": 0,
    "imaging": 0,
    "index": 1,
    "storage": 1,
    "remote": 1,
    "core": 2,
    "web": 3,
    "rest": 3,
    "dicomweb": 3,
    "dimse": 3,
    "app": 4,
    "cli": 4,
    "__main__": 4,
    "__init__": 0,
}
ALLOWED_SAME_LAYER = {("rest", "web"), ("dicomweb", "web")}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def family(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else rel[0][:-3]


def imported_families(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG).parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(rel[:-1])[: len(rel) - node.level]
            target = base + (node.module.split(".") if node.module else [])
            if target:
                out.add(target[0].removesuffix(".py"))
            elif node.module is None:
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orthanc_py."):
            out.add(node.module.split(".")[1])
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_dependency_rule(path):
    fam = family(path)
    layer = LAYER[fam]
    for dep in imported_families(path) - {fam}:
        dep_layer = LAYER.get(dep, 0)
        if (fam, dep) in ALLOWED_SAME_LAYER:
            continue
        ok = dep_layer < layer or layer == 4 or (layer == 0 and dep_layer == 0)
        assert ok, f"{fam} (L{layer}) imports {dep} (L{dep_layer})"
    if fam in ("core",):  # core never names a concrete backend, HTTP or pynetdicom
        tree = ast.parse(path.read_text())
        names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.split(".")[0] in ("aiohttp", "pynetdicom") or m.endswith("sqlite") for m in names), names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_alone(path):
    rel = path.relative_to(PKG).with_suffix("")
    name = ".".join(("orthanc_py", *rel.parts))
    if name.endswith("__main__"):
        return
    importlib.import_module(name.removesuffix(".__init__"))
