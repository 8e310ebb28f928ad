"""``linesight inspect IMAGE --class C``: score one image without Kafka; JSON out plus an overlay PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from linesight.commands._common import class_name, existing_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="score one image with the active bank of its class; prints JSON and writes an overlay PNG",
        description=(
            "Scores IMAGE against the active memory bank of --class (or --bank FILE) and prints JSON with "
            "is_anomalous, score, threshold, positions, region_count and the verdict sentence. With "
            "--zero-shot, a class with no bank is scored by the trained decoder of LINESIGHT_CHECKPOINT_DIR "
            "alone; LINESIGHT_MAP_FUSION=mean|max fuses both maps."
        ),
    )
    parser.add_argument("image", type=existing_file, metavar="IMAGE", help="a PNG/JPEG/BMP file")
    parser.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class of the image")
    parser.add_argument("--bank", type=existing_file, default=None, help="a bank .safetensors file (default: active)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="no bank: score with the trained decoder of LINESIGHT_CHECKPOINT_DIR (a new class)")
    parser.add_argument("--overlay", type=Path, default=None, help="where to write the overlay (default IMAGE.overlay.png)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import cv2

    from linesight.errors import ConfigError
    from linesight.settings import load_settings
    from model.detector import Detector
    from pipeline.banks import BankManager
    from pipeline.overlay import render_overlay

    settings = load_settings()
    image_bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if image_bgr is None:
        raise ConfigError(f"cannot read image {str(args.image)!r} (not an image, or corrupt)")
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    manager = BankManager(settings)
    zero_shot = None
    if args.zero_shot or settings.map_fusion != "few_only":
        from model.zero_shot import load_zero_shot_head

        if settings.checkpoint_dir is None:
            raise ConfigError("--zero-shot needs LINESIGHT_CHECKPOINT_DIR: a `linesight train` folder")
        zero_shot = load_zero_shot_head(settings.checkpoint_dir, manager.encoder)
    if args.zero_shot:
        if args.bank is not None:
            raise ConfigError("--zero-shot scores without a bank; drop --bank")
        detector = Detector(manager.encoder, zero_shot=zero_shot)
        result = detector.score_zero_shot([image], [args.product_class])[0]
        bank_version = None
    else:
        bank = _bank(args, settings, manager)
        detector = Detector(manager.encoder, zero_shot=zero_shot, fusion=settings.map_fusion)
        result = detector.score_batch([image], bank)[0]
        bank_version = bank.version
    size = result.anomaly_map.shape[0]
    shown = cv2.resize(image, (size, size)) if image.shape[:2] != (size, size) else image
    overlay = render_overlay(
        shown, result.anomaly_map, result.mask, label=f"{result.score:.3f} / {result.threshold:.3f}",
        full_scale=2 * result.threshold,
    )
    overlay_path = args.overlay or args.image.with_name(args.image.stem + ".overlay.png")
    if not cv2.imwrite(str(overlay_path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
        raise ConfigError(f"cannot write overlay to {str(overlay_path)!r}")
    print(json.dumps({
        "image": str(args.image),
        "class": args.product_class,
        "bank_version": bank_version,
        "mode": "zero_shot" if args.zero_shot else settings.map_fusion,
        "is_anomalous": result.is_anomalous,
        "score": round(result.score, 5),
        "threshold": round(result.threshold, 5),
        "positions": list(result.positions),
        "region_count": result.region_count,
        "verdict": result.verdict,
        "overlay": str(overlay_path),
    }))
    return 0


def _bank(args: argparse.Namespace, settings, manager):
    """The bank to score against: --bank FILE, else the class's active version."""
    from linesight.errors import ConfigError
    from model.bank import MemoryBank

    if args.bank is not None:
        bank = MemoryBank.load(args.bank, expected_encoder=settings.encoder, max_rows=settings.max_bank_rows)
    else:
        active = manager.repository.active_banks()
        if args.product_class not in active:
            known = ", ".join(sorted(active)) or "none"
            raise ConfigError(
                f"no active bank for class {args.product_class!r} (active: {known}); build one with "
                "`linesight bank build --class C --images DIR`, or score it with --zero-shot"
            )
        row = active[args.product_class]
        bank = MemoryBank.load(
            Path(row.path), expected_encoder=settings.encoder, expected_sha256=row.sha256,
            max_rows=settings.max_bank_rows,
        )
    if bank.product_class != args.product_class:
        raise ConfigError(f"bank {str(args.bank)!r} is for class {bank.product_class!r}, not {args.product_class!r}")
    return bank
