"""The pairs file the class tests rate (tests/test_class_app.py, tests/test_class_server.py)."""
from __future__ import annotations

import json
from pathlib import Path

PAIRS = [{"prompt": f"what colour is animal {i}?", "answer_a": f"Animal {i} is green.",
          "answer_b": f"Ugh. Animal {i} is blue, obviously.", "model": "sft@T0.7",
          "model_b": "sft@T1.3"} for i in range(12)]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    """`pairs` as a class pairs file at `path`."""
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path
