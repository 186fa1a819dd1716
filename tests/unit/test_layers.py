"""The layer table of ARCHITECTURE.md, checked on every import statement of every module.

| layer | packages | may import |
| L0 | errors, config, model/, imaging/ | L0 |
| L1 | index/, storage/, remote/ | L0 + their own package; never each other, never L2+ |
| L2 | core/ | L0, remote, and of index/ and storage/ only their protocols (base) and the storage
|    |       | accessor; never a concrete backend (sqlite, filesystem, memory), aiohttp or pynetdicom |
| L3 | web/, rest/, dicomweb/, dimse/ | core, L0 (rest and dicomweb also web); never L1, never each
|    |                                | other otherwise; no `ctx.index` / `ctx.storage` |
| L4 | app, cli, __main__ | anything |

Both `import a.b` and `from a import b` count, at module level or inside a function (a lazy
import is still a dependency); imports under `if TYPE_CHECKING:` are annotations, not
dependencies, and are left out of the cycle check (the layer rule still applies to them).
No import cycle between modules, and each module imports alone in an interpreter where no
module of the package was loaded yet. `test_checker_catches_*` plant
violations in a throw-away package to show each rule fails when broken.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "orthanc_py"

LAYER = {
    "errors": 0,
    "config": 0,
    "model": 0,
    "imaging": 0,
    "__init__": 0,
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
    "readers": 4,
}
ALLOWED_SAME_LAYER = {("rest", "web"), ("dicomweb", "web")}
# What core may use of index/ and storage/: the protocols, and the storage wrapper (compression,
# MD5) every backend shares; never a concrete backend (sqlite, filesystem, memory, ...).
CORE_BACKEND_API = frozenset({"index", "index.base", "storage", "storage.base", "storage.accessor"})
CORE_FORBIDDEN_LIBRARIES = ("aiohttp", "pynetdicom")
INTERFACES = ("web", "rest", "dicomweb", "dimse")


def module_name(path: Path, root: Path) -> str:
    """`root/core/ingest.py` -> `<root name>.core.ingest` (a package by its `__init__`'s name)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path, root: Path) -> bool:
    return path.name == "__init__.py"


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)
    return out


def imports_of(path: Path, root: Path, runtime_only: bool = False) -> list[tuple[str, int]]:
    """Every module of the package `path` imports (absolute names), with the line; with
    `runtime_only`, not those under `if TYPE_CHECKING:`."""
    pkg = root.name
    here = module_name(path, root).split(".")
    package = here if _is_package(path, root) else here[:-1]
    out: list[tuple[str, int]] = []
    tree = ast.parse(path.read_text())
    for node in _runtime_nodes(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == pkg]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.split(".")[0] == pkg:
                target = node.module
            else:
                continue
            for alias in node.names:  # `from .core import ingest`: the submodule when it is one
                sub = f"{target}.{alias.name}"
                out.append((sub if _exists(sub, root) else target, node.lineno))
    return out


def _exists(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def _family(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _third_party(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _backend_uses(path: Path) -> list[int]:
    """Lines of `ctx.index`, `ctx.storage`, `self.ctx.index`, ... in a module."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("index", "storage"):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "ctx") or (
                isinstance(owner, ast.Attribute) and owner.attr == "ctx"
            ):
                lines.append(node.lineno)
    return lines


def violations(root: Path) -> list[str]:
    """Every breach of the layer table in the package at `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        fam = _family(me)
        layer = LAYER[fam]
        where = path.relative_to(root)
        for target, line in imports_of(path, root):
            dep = _family(target)
            if dep == fam or layer == 4:
                continue
            dep_layer = LAYER.get(dep, 0)
            ok = (fam, dep) in ALLOWED_SAME_LAYER or dep_layer < layer or (layer == 0 and dep_layer == 0)
            if layer == 3 and dep_layer == 1:
                ok = False  # interfaces go through core, never to a backend
            if layer == 2 and dep in ("index", "storage") and target.split(".", 1)[-1] not in CORE_BACKEND_API:
                ok = False
            if not ok:
                found.append(f"{where}:{line}: {fam} (L{layer}) imports {target} (L{dep_layer})")
        if layer == 2:
            for lib in sorted(_third_party(path) & set(CORE_FORBIDDEN_LIBRARIES)):
                found.append(f"{where}: core imports {lib}")
        if fam in INTERFACES:
            found += [f"{where}:{line}: an interface uses ctx.index / ctx.storage" for line in _backend_uses(path)]
    return found


def cycles(root: Path) -> list[list[str]]:
    """The import cycles between modules (strongly connected components of more than one module,
    or a module importing itself), lazy imports included."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        me = module_name(path, root)
        graph.setdefault(me, set()).update(t for t, _ in imports_of(path, root, runtime_only=True) if t != me)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_layer_table_holds():
    assert violations(PKG) == []


def test_no_import_cycle():
    assert cycles(PKG) == []


_IMPORT_EACH = """
import importlib, os, sys
# third-party libraries first (shared by the forks, so each child only pays for our modules)
for lib in ("pydicom", "numpy", "PIL.Image", "aiohttp.web", "pynetdicom", "orjson"):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert not any(m == "orthanc_py" or m.startswith("orthanc_py.") for m in sys.modules)
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("FAILED", " ".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_each_module_imports_alone():
    """Each module in an interpreter where no other module of ours is loaded (forked from one
    that has only the third-party libraries, to stay fast)."""
    names = sorted(module_name(p, PKG) for p in PKG.rglob("*.py") if p.name != "__main__.py" and p.suffix == ".py")
    run = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names],
        cwd=PKG.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------ the checker fails when it should
def _plant(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "orthanc_py"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(pkg).parents:
            init = pkg / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(text))
    return pkg


def test_checker_catches_each_violation(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "index/sqlite.py": "",
            "storage/base.py": "",
            "core/good.py": "from ..index import base\n",
            "core/bad.py": "import orthanc_py.index.sqlite\nimport aiohttp\n",
            "storage/memory.py": "",
            "core/backend.py": "from ..storage import memory\n",
            "rest/plain.py": "import orthanc_py.index.sqlite as sqlite\n",
            "rest/relative.py": "from ..storage import base\n",
            "rest/sibling.py": "from ..dicomweb import qido\n",
            "dicomweb/qido.py": "",
            "dimse/lazy.py": "def f():\n    from ..index import sqlite\n",
            "dimse/direct.py": "def f(self, ctx):\n    return ctx.index.read, self.ctx.storage.read\n",
            "model/up.py": "from ..core import good\n",
            "index/up.py": "from ..storage import base\n",
        },
    )
    found = "\n".join(violations(pkg))
    for expected in (
        "core/bad.py:1: core (L2) imports orthanc_py.index.sqlite",
        "core/bad.py: core imports aiohttp",
        "core/backend.py:1: core (L2) imports orthanc_py.storage.memory",
        "rest/plain.py:1: rest (L3) imports orthanc_py.index.sqlite",
        "rest/relative.py:1: rest (L3) imports orthanc_py.storage.base",
        "rest/sibling.py:1: rest (L3) imports orthanc_py.dicomweb.qido",
        "dimse/lazy.py:2: dimse (L3) imports orthanc_py.index.sqlite",
        "dimse/direct.py:2: an interface uses ctx.index / ctx.storage",
        "model/up.py:1: model (L0) imports orthanc_py.core.good",
        "index/up.py:1: index (L1) imports orthanc_py.storage.base",
    ):
        assert expected in found
    assert "core/good.py" not in found
    assert found.count("dimse/direct.py:2") == 2


def test_checker_catches_a_cycle(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "core/a.py": "from . import b\n",
            "core/b.py": "def f():\n    from .c import x\n",  # lazy imports close cycles too
            "core/c.py": "import orthanc_py.core.a\nx = 1\n",
            "core/d.py": "from .a import b\n",
            "core/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .f import y\n",
            "core/f.py": "from . import e\ny = 1\n",  # a type-only import closes no cycle
        },
    )
    assert cycles(pkg) == [["orthanc_py.core.a", "orthanc_py.core.b", "orthanc_py.core.c"]]
