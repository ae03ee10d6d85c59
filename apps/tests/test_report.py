"""report.md's parts that need no run: the device line."""

from types import SimpleNamespace

import torch

import tinylm.apps.report as report


def test_device_auto_is_resolved_as_train_resolves_it(monkeypatch):
    """ "auto" on a Mac without CUDA trains on MPS (train's `resolve_device`); the report said
    cpu (its own copy of the rule knew only cuda and cpu)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert report._device(SimpleNamespace(device="auto")) == ("mps", False)
    assert report._device(SimpleNamespace(device="cpu")) == ("cpu", False)
