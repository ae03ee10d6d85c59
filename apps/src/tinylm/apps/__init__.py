"""tinylm.apps: end-to-end runs."""

__all__: list[str] = []
