"""get_batch sampling and the token-file checks."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.nn import TYPECHECK, unchecked
from tinylm.train import check_tokens, get_batch, open_tokens


def test_shapes_dtype_and_shift():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(tokens, 7, 16, "cpu", torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (7, 16)
    assert x.dtype == y.dtype == torch.int64
    assert x.device.type == "cpu"
    # arange data: each row is consecutive and y is x shifted by one.
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert torch.equal(y, x + 1)


def test_starts_cover_the_whole_valid_range_and_no_more():
    n, ctx = 20, 4
    tokens = np.arange(n, dtype=np.uint32)
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        x, y = get_batch(tokens, 8, ctx, "cpu", gen)
        starts.update(x[:, 0].tolist())
        assert int(y.max()) <= n - 1
    assert starts == set(range(n - ctx))  # uniform over [0, len - ctx - 1]


def test_deterministic_given_generator():
    tokens = np.random.default_rng(0).integers(0, 500, 10_000).astype(np.uint16)
    a = get_batch(tokens, 4, 32, "cpu", torch.Generator().manual_seed(3))
    b = get_batch(tokens, 4, 32, "cpu", torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


class RecordingArray(np.ndarray):
    """An ndarray that records how many elements each indexing operation touches."""

    touched: list[int]

    def __getitem__(self, index):
        result = super().__getitem__(index)
        RecordingArray.touched.append(int(np.size(result)))
        return np.asarray(result)


def test_memmap_reads_only_the_sampled_windows(tmp_path):
    path = tmp_path / "ids.npy"
    np.save(path, np.arange(1_000_000, dtype=np.uint32))
    mm = np.load(path, mmap_mode="r")
    RecordingArray.touched = []
    tracked = mm.view(RecordingArray)
    x, y = get_batch(tracked, 4, 64, "cpu", torch.Generator().manual_seed(1))
    assert sum(RecordingArray.touched) <= 4 * 65  # never the whole array
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert int(x[0, 0]) == mm[int(x[0, 0])]  # values come from the file


def test_too_short_raises():
    with pytest.raises(ValueError, match="fewer than context_length"):
        get_batch(np.arange(10, dtype=np.uint16), 2, 10, "cpu")


@pytest.mark.gpu
def test_cuda_batches_are_on_device():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, y = get_batch(np.arange(1000, dtype=np.uint16), 2, 8, "cuda")
    assert x.is_cuda and y.is_cuda and x.dtype == torch.int64


def test_open_tokens_npy_and_bin(tmp_path):
    ids = np.arange(100, dtype=np.uint16)
    np.save(tmp_path / "a.npy", ids)
    ids.tofile(tmp_path / "a.bin")
    assert isinstance(open_tokens(tmp_path / "a.npy"), np.memmap)
    assert np.array_equal(open_tokens(tmp_path / "a.bin", "uint16"), ids)


def test_open_tokens_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_tokens(tmp_path / "missing.npy")
    np.save(tmp_path / "f.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        open_tokens(tmp_path / "f.npy")
    np.save(tmp_path / "u.npy", np.zeros(10, dtype=np.uint16))
    with pytest.raises(ValueError, match=r"data\.dtype says uint32"):
        open_tokens(tmp_path / "u.npy", "uint32")
    np.zeros(11, dtype=np.uint8).tofile(tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="whole number"):
        open_tokens(tmp_path / "odd.bin", "uint16")
    with pytest.raises(ValueError, match=r"data\.dtype"):
        open_tokens(tmp_path / "odd.bin")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"bad\.npy is not a \.npy file"):
        open_tokens(tmp_path / "bad.npy")


def _npy_bytes(ids: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, ids)
    return buffer.getvalue()


def test_open_tokens_garbage_header_is_bad_input_naming_the_file(tmp_path):
    """A header numpy cannot parse raised tokenize.TokenError (exit 1, no file named)."""
    good = _npy_bytes(np.arange(10, dtype=np.uint16))
    path = tmp_path / "train.npy"
    path.write_bytes(good[:10] + b"{(((\n" + good[15:])
    with pytest.raises(ValueError, match=r"train\.npy is not a readable \.npy file"):
        open_tokens(path)
    path.write_bytes(good[:9])  # cut inside the header
    with pytest.raises(ValueError, match=r"train\.npy is not a readable \.npy file"):
        open_tokens(path)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_open_tokens_damaged_file_is_an_array_or_one_value_error(tmp_path_factory, data):
    """Any damage to a .npy file's bytes: an array, or a ValueError naming the file."""
    good = bytearray(_npy_bytes(np.arange(40, dtype=np.uint16)))
    header_end = 10 + int.from_bytes(good[8:10], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, header_end - 1))
        good[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    path = tmp_path_factory.mktemp("npy") / "ids.npy"
    path.write_bytes(bytes(good[:cut]))
    try:
        tokens = open_tokens(path)
    except ValueError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert tokens.ndim == 1


def test_check_tokens():
    ok = np.arange(1000, dtype=np.uint16) % 50
    check_tokens(ok, "train", vocab_size=50, context_length=16)
    bad = ok.copy()
    bad[500] = 77
    with pytest.raises(ValueError, match=r"token id 77 >= model\.vocab_size 50 at offset 500"):
        check_tokens(bad, "train", vocab_size=50, context_length=16)
    with pytest.raises(ValueError, match=r"fewer than model\.context_length"):
        check_tokens(ok[:10], "val", vocab_size=50, context_length=16)
    with pytest.raises(ValueError, match="negative"):
        check_tokens(np.full(100, -1, dtype=np.int32), "train", vocab_size=50, context_length=8)


def test_check_tokens_streams_the_whole_memmap(tmp_path):
    """Issue 7 #2: 2% of ids out of range anywhere in a big memmap, not only in sampled runs;
    small chunks force the streaming path and the first bad offset is found across chunks."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 500, size=400_000).astype(np.uint16)
    bad = np.sort(rng.choice(len(ids), size=len(ids) // 50, replace=False))
    ids[bad] = 60000
    path = tmp_path / "ids.npy"
    np.save(path, ids)
    tokens = np.load(path, mmap_mode="r")
    with pytest.raises(ValueError, match=rf"token id 60000 >= .* at offset {bad[0]} "):
        check_tokens(tokens, "train", vocab_size=512, context_length=16, chunk=1000)
    ids[bad] = 7
    check_tokens(ids, "train", vocab_size=512, context_length=16, chunk=1000)
    late = ids.copy()
    late[-1] = 512  # the very last id, in a partial last chunk
    with pytest.raises(ValueError, match=rf"at offset {len(ids) - 1} "):
        check_tokens(late, "train", vocab_size=512, context_length=16, chunk=999)


def test_get_batch_follows_nns_typecheck_switch():
    """One TINYLM_TYPECHECK switch (nn's): get_batch's annotations are checked like nn's entry
    points, and not inside `tinylm.nn.unchecked()` (train's old copy of the switch ignored it)."""
    tokens = np.arange(100, dtype=np.uint16)
    if TYPECHECK:
        with pytest.raises(Exception, match="batch_size"):
            get_batch(tokens, np.int64(4), 8, "cpu")  # a NumPy int is not an `int`
    with unchecked():
        x, y = get_batch(tokens, np.int64(4), 8, "cpu")
    assert x.shape == y.shape == (4, 8) and torch.equal(x[:, 1:], y[:, :-1])
