"""Write the exact points the bench evaluates: python -m bench.data SPEC --n-examples N --save FILE

FILE is torch.save'd {"x": float32 n x 3 x H x W in [0,1] (uint8 0..255 with --uint8), "y": int64 n}, the
layout robustbench's loaders return; load it with torch.load(FILE, weights_only=True). `--check` lists, without
decoding anything, which of the first N images a dataset folder lacks (ImageNet), before a long run.
"""
from __future__ import annotations

import os
import sys

from bench.data import DATA_SPECS, imagenet_root, load_points
from zoo.data import DataError
from zoo.files import save_atomic
from zoo.errors import error_line
from zoo.cli import parser


def main(argv=None) -> int:
    p = parser("python -m bench.data", "Write the exact points the bench evaluates to a file.")
    p.add_argument("spec", help=" | ".join(DATA_SPECS))
    p.add_argument("--data-dir", default="data", help="where cifar10/cifar100 are (or ImageNet's folder for `imagenet`)")
    p.add_argument("--n-examples", type=int, default=10000, help="the first N test points, in order (ImageNet: <= 5000)")
    p.add_argument("--save", default=None, metavar="FILE", help="write the points here")
    p.add_argument("--uint8", action="store_true", help="save x as uint8 0..255 (a quarter of the bytes)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="folder:DIR whose images differ in size: shorter side resized to S, then the centre S x S")
    p.add_argument("--check", action="store_true", help="list the images of the first N points a folder lacks")
    a = p.parse_args(argv)
    if not a.save and not a.check:
        p.error("pass --save FILE, --check, or both")
    try:
        if a.check:
            root = imagenet_root(a.spec, a.data_dir)
            if root is None:
                print(f"{a.spec}: nothing to check (the data is a file or a download, read whole)")
            else:
                from bench.data.imagenet import MAX_POINTS, missing_images

                n = min(a.n_examples, MAX_POINTS)
                gone = missing_images(root, n)
                for e in gone:
                    print(f"missing: {os.path.join(root, 'val', e)}")
                print(f"imagenet:{root}: {n - len(gone)} of the first {n} points present, {len(gone)} missing")
                if gone:
                    return 1
        if a.save:
            pts = load_points(a.spec, a.data_dir, a.n_examples, progress=True, image_size=a.image_size)
            x = pts.x if a.uint8 else pts.x.float().div(255)
            save_atomic({"x": x.contiguous(), "y": pts.y}, a.save)
            print(f"{len(pts.y)} points of {pts.name} ({tuple(x.shape)}, {x.dtype}) -> {a.save}")
    except (DataError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
