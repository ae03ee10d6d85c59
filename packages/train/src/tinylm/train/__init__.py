"""tinylm.train (skeleton)."""

__all__: list[str] = []
