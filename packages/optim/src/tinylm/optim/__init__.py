"""tinylm.optim (skeleton)."""

__all__: list[str] = []
