"""drf-spectacular hooks."""

from __future__ import annotations

from typing import Any


def drop_trailing_slash_variants(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """Every path is served with and without one trailing slash; document it once."""
    paths = {path for path, *_ in endpoints}
    return [e for e in endpoints if not (e[0].endswith("/") and e[0].rstrip("/") in paths)]
