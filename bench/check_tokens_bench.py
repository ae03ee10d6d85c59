"""Cost of the start-of-run token-id check: a 1 GB uint16 .npy (500M ids), checked twice.

uv run --no-sync python -m bench.check_tokens_bench [/tmp/ids_1gb.npy]   # deleted after
"""

import os
import sys
import time

import numpy as np

from tinylm.train import check_tokens


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ids_1gb.npy"
    n = 500_000_000  # 1 GB of uint16
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n,))
    for s in range(0, n, 1 << 26):
        arr[s : s + (1 << 26)] = (np.arange(min(1 << 26, n - s), dtype=np.uint32) % 50000).astype(
            np.uint16
        )
    arr.flush()
    del arr
    tokens = np.load(path, mmap_mode="r")
    for i in range(2):
        t = time.perf_counter()
        check_tokens(tokens, "train", 50257, 1024)
        dt = time.perf_counter() - t
        print(
            f"check_tokens 1 GB uint16 ({n:,} ids), pass {i + 1}: {dt:.2f} s, "
            f"{os.path.getsize(path) / dt / 1e9:.2f} GB/s"
        )
    os.unlink(path)


if __name__ == "__main__":
    main()
