"""tinylm.nn (skeleton)."""

__all__: list[str] = []
