"""Build socjax/data/assets/mnist-mini.npz, the MNIST subset embedded in the package.

It holds the first 10,000 training and the first 2,000 test images of real MNIST, as uint8, read
from the four original IDX .gz files (checked against their SHA-256 sums):

    python experiments/build_mnist_mini.py --data-dir ../shared/data/mnist

tests/test_data.py rebuilds the subset from the same files and checks it equals the shipped one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from socjax import data


def build(data_dir: str) -> dict[str, np.ndarray]:
    raw = data.load_idx_dir(data_dir)
    return dict(
        train_images=raw.train_images[: data.MINI_TRAIN],
        train_labels=raw.train_labels[: data.MINI_TRAIN],
        test_images=raw.test_images[: data.MINI_TEST],
        test_labels=raw.test_labels[: data.MINI_TEST],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX .gz files")
    p.add_argument("--out", default=str(Path(data.__file__).parent / "assets" / data.EMBEDDED_FILE),
                   help="where to write (default: the package's socjax/data/assets/mnist-mini.npz)")
    args = p.parse_args()
    np.savez_compressed(args.out, **build(args.data_dir))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
