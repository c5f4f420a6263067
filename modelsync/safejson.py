"""JSON that stays inert when a browser reads it as HTML: ``<``, ``>`` and ``&`` written as
``\\u`` escapes (the same document to any JSON parser: they can only occur inside strings).
Every HTTP answer of modelsync's own JSON goes through ``dumps``, with ``nosniff``."""

from __future__ import annotations

import json
from typing import Any

NOSNIFF = ("X-Content-Type-Options", "nosniff")
_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))


def html_safe(text: str) -> str:
    """JSON text with its ``<``, ``>`` and ``&`` escaped."""
    for char, escaped in _ESCAPES:
        text = text.replace(char, escaped)
    return text


def dumps(doc: Any, **kwargs: Any) -> str:
    return html_safe(json.dumps(doc, **kwargs))
