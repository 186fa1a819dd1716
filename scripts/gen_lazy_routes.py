#!/usr/bin/env python3
"""Write orthanc_py/rest/routes.py: the router calls of each lazily imported REST area (rest.LAZY),
taken from the area's own `setup` (tests/unit/test_lazy_routes.py checks the file is current).

    python scripts/gen_lazy_routes.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def render() -> str:
    from orthanc_py import rest
    from orthanc_py.rest.lazy import recorded

    lines = [
        '"""The router calls of the REST areas imported on first use (rest/lazy.py), in order.',
        "",
        "Generated from each area's `setup` by scripts/gen_lazy_routes.py: do not edit.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "AREAS: dict[str, tuple[tuple[Any, ...], ...]] = {",
    ]
    for name in rest.LAZY:
        calls = recorded(importlib.import_module(f"orthanc_py.rest.{name}")).calls
        lines.append(f"    {name!r}: (")
        lines.extend(f"        {call!r}," for call in calls)
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "orthanc_py" / "rest" / "routes.py").write_text(render())
