"""``linesight simulate``: draw synthetic anomalies from a folder of normal images into one PNG grid to look at."""

from __future__ import annotations

import argparse
from pathlib import Path

from linesight.commands._common import class_name, existing_dir, positive_int

_TILE_PX = 224
_COLUMNS = 2  # samples per row; each sample is [anomaly | contour | mask]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="draw synthetic anomalies (NSA, cut-paste, scratch, stain) into a PNG grid with their masks",
        description=(
            "Takes normal images from --class-dir (a folder of images, or a class folder with train/good) and "
            "writes --count synthetic anomalies next to their ground-truth masks, to check by eye what the "
            "decoder will be trained on. NSA pastes a patch from a different normal image with Poisson blending."
        ),
    )
    parser.add_argument("--class-dir", type=existing_dir, required=True, help="normal images of one class")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--count", type=positive_int, default=8, help="number of samples (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--method", choices=("nsa", "cutpaste", "scratch", "stain"), default="nsa")
    parser.add_argument("--clone", choices=("normal", "mixed"), default="normal",
                        help="Poisson mode for nsa: normal (NORMAL_CLONE) or mixed (MIXED_CLONE, textures)")
    parser.add_argument("--class", dest="product_class", type=class_name, default=None,
                        help="class name for the patch-size bounds (default: the folder's name)")
    parser.set_defaults(handler=handle)


def _image_folder(class_dir: Path) -> Path:
    nested = class_dir / "train" / "good"
    return nested if nested.is_dir() else class_dir


def handle(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from connectors.image_header import IMAGE_SUFFIXES
    from linesight.errors import ConfigError
    from training.datasets import Sample
    from training.nsa import AnomalySimulator

    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got {str(args.out)!r}")
    folder = _image_folder(args.class_dir)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"no images ({'/'.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    name = args.product_class or (args.class_dir.name if folder != args.class_dir else folder.name)
    images = [Sample(p, name, 0, "good").load_image(_TILE_PX) for p in paths[:64]]
    simulator = AnomalySimulator(images, product_class=name, method=args.method, clone_mode=args.clone, seed=args.seed)
    tiles = []
    for _ in range(args.count):
        result = simulator.sample_detailed()
        tiles.append(_tile(result.image, result.mask, len(result.patches)))
    while len(tiles) % _COLUMNS and len(tiles) > _COLUMNS:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + _COLUMNS], axis=1) for i in range(0, len(tiles), _COLUMNS)]
    grid = np.concatenate(rows, axis=0)
    title = np.full((28, grid.shape[1], 3), 255, np.uint8)
    caption = f"{name}: {args.method}" + (f" ({args.clone} clone)" if args.method == "nsa" else "") + f", seed {args.seed}"
    cv2.putText(title, caption, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([title, grid], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), grid[:, :, ::-1]):
        raise ConfigError(f"cannot write {str(args.out)!r}")
    print(f"wrote {args.count} {args.method} samples from {len(images)} normal images to {args.out}")
    return 0


def _tile(image, mask, n_patches: int):
    """[image | image with the mask's contour in red and the mask in white] with a 4 px white gap."""
    import cv2
    import numpy as np

    outlined = np.ascontiguousarray(image.copy())
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(outlined, contours, -1, (255, 0, 0), 1)
    mask_rgb = np.repeat((mask > 0).astype(np.uint8)[:, :, None] * 255, 3, axis=2)
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    tile = np.concatenate([image, gap, outlined, gap, mask_rgb, np.full((image.shape[0], 12, 3), 255, np.uint8)], axis=1)
    label = np.full((18, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(label, f"{n_patches} patch{'es' if n_patches > 1 else ''}", (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (60, 60, 60), 1, cv2.LINE_AA)
    return np.concatenate([label, tile, np.full((8, tile.shape[1], 3), 255, np.uint8)], axis=0)
