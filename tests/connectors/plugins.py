"""Install a connector the way a third party would: a tiny distribution on sys.path with an entry point.

Nothing in the core is changed or patched: `importlib.metadata` finds the dist-info exactly
as it finds an installed wheel's.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def installed_plugin(tmp_path: Path, *, slug: str, source: str, class_name: str) -> Iterator[str]:
    """Write module `source` and a dist-info registering `slug = module:class_name`; yields the module name."""
    module = f"handoff_test_plugin_{uuid.uuid4().hex[:8]}"
    root = tmp_path / f"site-{module}"
    root.mkdir()
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist_info = root / f"{module}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(
        f"[handoff.connectors]\n{slug} = {module}:{class_name}\n", encoding="utf-8")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield module
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()
