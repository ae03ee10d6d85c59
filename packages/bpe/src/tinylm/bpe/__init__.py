"""tinylm.bpe (skeleton)."""

__all__: list[str] = []
