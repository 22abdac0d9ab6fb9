"""The budget search's cache: JSON files under .shrinkflow/cache/search, one per sensitivity table and one
table of measured costs, keyed by what each depends on (a later run does not re-time what it timed before)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import torch

from steps.compression import width_search
from steps.core.files import write_json
from steps.core.layout import STATE_DIR

CACHE_DIR = f"{STATE_DIR}/cache/search"


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def machine() -> list:
    import onnxruntime

    return [platform.node(), platform.machine(), os.cpu_count(), onnxruntime.__version__, torch.__version__]


class SearchCache:
    """JSON files under .shrinkflow/cache/search: one per sensitivity table, one table of measured costs."""

    def __init__(self, root: Path) -> None:
        self.folder = root / CACHE_DIR
        self._costs_file = self.folder / "costs.json"
        self.costs: dict[str, dict] = json.loads(self._costs_file.read_text()) if self._costs_file.is_file() else {}
        self._earlier = set(self.costs)
        self.reused = False
        """Whether a cost measured by an earlier run was used."""

    def sensitivity(self, key: str) -> dict | None:
        path = self.folder / f"sensitivity-{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def keep_sensitivity(self, key: str, base: float, table: width_search.Sensitivity) -> None:
        write_json(self.folder / f"sensitivity-{key}.json",
                   {"base": base, "table": {layer: {str(w): d for w, d in t.items()} for layer, t in table.items()}})

    def cost(self, key: str, measure) -> dict:
        if key in self.costs:
            self.reused |= key in self._earlier
            return self.costs[key]
        self.costs[key] = measure()
        write_json(self._costs_file, self.costs)
        return self.costs[key]

    def forget_earlier(self) -> None:
        """Measure again what earlier runs measured (the new costs replace theirs in the file)."""
        for key in self._earlier:
            self.costs.pop(key, None)
        self._earlier, self.reused = set(), False
