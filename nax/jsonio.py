"""JSON as every nax writer encodes it: strict JSON, non-finite floats as ``null``.

Journals, summaries and benchmark or experiment results all go through :func:`clean`
(or :func:`dumps`, which calls it), so one value is written one way everywhere:

- numpy scalars and arrays become Python numbers and lists, tuples become lists;
- NaN, +inf and -inf become ``null``: strict JSON (RFC 8259) has no token for them, and
  ``json.dumps`` would otherwise write ``NaN`` / ``Infinity``, which many readers reject.
  A reader that needs a float back maps ``None`` to NaN.

    text = jsonio.dumps({"acc": np.float32(0.5), "loss": float("nan")})   # '{"acc": 0.5, "loss": null}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def clean(x: Any) -> Any:
    """A JSON-ready copy of ``x``: numpy to Python, tuples to lists, non-finite floats to None."""
    if isinstance(x, Mapping):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy scalars and arrays
        return clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(x: Any, **kw) -> str:
    """``json.dumps`` of ``clean(x)``; ``kw`` (indent, separators, sort_keys) as json's.

    Raises ValueError on anything ``clean`` leaves non-finite (nothing it is given) and
    TypeError on objects JSON cannot hold, rather than writing non-standard JSON.
    """
    return json.dumps(clean(x), allow_nan=False, **kw)
