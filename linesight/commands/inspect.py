"""``linesight inspect IMAGE|FOLDER --class C``: score images without Kafka; JSON or a table, plus overlay PNGs.

Outputs go to an output folder (``--out``, default ``<data_dir>/inspect/``), never next to the
input: run over a dataset folder, it must not add files that a later ``eval`` would read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from linesight.commands._common import class_name, existing_file

# columns of the batch table, CSV and JSON (also the keys of the single-image JSON)
FIELDS = ("image", "product_class", "bank_version", "mode", "is_anomalous", "score", "threshold", "positions",
          "region_count", "regions", "verdict", "overlay", "error")


def _image_or_folder(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such image or folder: {text!r}")
    return path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="score an image (or every image of a folder) with the active bank of its class; JSON/table + overlays",
        description=(
            "Scores IMAGE against the active memory bank of --class (or --bank FILE) and prints JSON with "
            "is_anomalous, score, threshold, positions, region_count and the verdict sentence. A FOLDER is scored "
            "image by image (its sub-folders too, overlays skipped) and printed as a table; --csv/--json write "
            "every row. Overlays go to --out (default LINESIGHT_DATA_DIR/inspect/), never beside the input. "
            "With --zero-shot, a class with no bank is scored by the trained decoder of LINESIGHT_CHECKPOINT_DIR "
            "alone; LINESIGHT_MAP_FUSION=mean|max fuses both maps."
        ),
        epilog="example: linesight inspect shots/ --class washer --csv washer.csv",
    )
    parser.add_argument("image", type=_image_or_folder, metavar="IMAGE|FOLDER", help="a PNG/JPEG/BMP file or a folder")
    parser.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class of the image(s)")
    parser.add_argument("--bank", type=existing_file, default=None, help="a bank .safetensors file (default: active)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="no bank: score with the trained decoder of LINESIGHT_CHECKPOINT_DIR (a new class)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for overlay PNGs (default LINESIGHT_DATA_DIR/inspect)")
    parser.add_argument("--overlay", type=Path, default=None, help="one image: write its overlay to this file instead")
    parser.add_argument("--no-overlay", action="store_true", help="write no overlay PNG")
    parser.add_argument("--ask", default=None, metavar="QUESTION",
                        help="one image: also answer this question about it, grounded in its score and regions "
                        "(the LLM, or the facts answer when the LLM's is degenerate); nothing is stored")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the rows as CSV")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, metavar="FILE",
                        help="also write the rows as a JSON list")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.errors import ConfigError
    from linesight.settings import load_settings

    settings = load_settings()
    batch = args.image.is_dir()
    if batch and args.overlay is not None:
        raise ConfigError("--overlay names one file; for a folder use --out DIR")
    if batch and args.ask is not None:
        raise ConfigError("--ask asks about one image, not a folder")
    paths = _folder_images(args.image) if batch else [args.image]
    if not paths:
        raise ConfigError(f"no images (.png, .jpg, .jpeg, .bmp) in folder {str(args.image)!r}")
    out_dir = args.out if args.out is not None else settings.data_dir / "inspect"
    scorer = _Scorer(args, settings)
    rows = []
    for path in paths:
        row = scorer.score(path)
        if row["error"] is None and not args.no_overlay:
            target = args.overlay or out_dir / _overlay_name(path, args.image if batch else path.parent)
            row["overlay"] = scorer.write_overlay(target)
        rows.append(row)
    _write_files(rows, args)
    if not batch:
        if rows[0]["error"]:
            raise ConfigError(rows[0]["error"])
        if args.ask is not None:
            rows[0].update(scorer.ask(args.ask))
        print(json.dumps({k: v for k, v in rows[0].items() if k != "error"}))
        return 0
    _print_table(rows, out_dir if not args.no_overlay else None)
    return 1 if any(row["error"] for row in rows) else 0


def _folder_images(folder: Path) -> list[Path]:
    """Images under ``folder`` (recursive, sorted), without overlays or hidden files."""
    from connectors.image_header import IMAGE_SUFFIXES
    from training.datasets import is_dataset_image

    return sorted(p for p in folder.rglob("*") if p.is_file() and is_dataset_image(p)
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _overlay_name(path: Path, root: Path) -> str:
    """``a/b/001.png`` under ``root`` -> ``a__b__001.overlay.png`` (unique per input, flat folder)."""
    relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return "__".join((*relative.parent.parts, relative.stem)) + ".overlay.png"


class _Scorer:
    """The encoder, detector and bank, loaded once for every image of the run."""

    def __init__(self, args: argparse.Namespace, settings) -> None:
        from linesight.errors import ConfigError
        from pipeline.services.banks import BankManager

        self.args, self.settings = args, settings
        needs_db = not args.zero_shot and args.bank is None
        if needs_db:
            from linesight.data_folder import open_repository

            manager = BankManager(settings, repository=open_repository(settings))  # read-only
        else:
            manager = BankManager(settings, repository=_NoRepository())
        if (args.zero_shot or settings.map_fusion != "few_only") and settings.checkpoint_dir is None:
            raise ConfigError("--zero-shot needs LINESIGHT_CHECKPOINT_DIR: a `linesight train` folder")
        if args.zero_shot:
            if args.bank is not None:
                raise ConfigError("--zero-shot scores without a bank; drop --bank")
            self.bank = None
            self.detector = manager.detector(zero_shot=True, fusion="few_only")
        else:
            self.bank = _bank(args, settings, manager)
            self.detector = manager.detector()
        self._last = None

    def score(self, path: Path) -> dict:
        """One row of :data:`FIELDS`; an unreadable image is a row with ``error`` set."""
        import cv2

        row = dict.fromkeys(FIELDS)
        row.update(image=str(path), product_class=self.args.product_class,
                   mode="zero_shot" if self.args.zero_shot else self.settings.map_fusion,
                   bank_version=None if self.bank is None else self.bank.version)
        image_bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image_bgr is None:
            row["error"] = f"cannot read image {str(path)!r} (not an image, or corrupt)"
            return row
        image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        if self.bank is None:
            result = self.detector.score_zero_shot([image], [self.args.product_class])[0]
        else:
            result = self.detector.score_batch([image], self.bank)[0]
        self._last = (image, result)
        row.update(is_anomalous=result.is_anomalous, score=round(result.score, 5),
                   threshold=round(result.threshold, 5), positions=list(result.positions),
                   region_count=result.region_count, verdict=result.verdict,
                   regions=[r.to_dict() for r in result.regions])
        return row

    def ask(self, question: str) -> dict:
        """``question``/``answer``/``answer_source`` about the image scored last (pipeline/services/dialogue.py)."""
        from pipeline.services.dialogue import answer_about_frame

        image, result = self._last
        reply = answer_about_frame(self.settings, image, result, self.args.product_class, question,
                                   bank=self.bank, encoder=self.detector.encoder)
        return {"question": question.strip(), "answer": reply.answer, "answer_source": reply.source}

    def write_overlay(self, target: Path) -> str:
        """The overlay of the image scored last, written to ``target``; returns its path."""
        import cv2

        from linesight.errors import ConfigError
        from model.overlay import render_overlay

        image, result = self._last
        height, width = result.anomaly_map.shape
        shown = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) if image.shape[:2] != (height, width) \
            else image
        overlay = render_overlay(shown, result.anomaly_map, result.mask,
                                 label=f"{result.score:.3f} / {result.threshold:.3f}", full_scale=2 * result.threshold)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise ConfigError(f"cannot write overlay to {str(target)!r}")
        return str(target)


class _NoRepository:
    """Stands in for the database when the bank comes from a file (--bank) or none is needed (--zero-shot)."""

    def active_banks(self) -> dict:
        return {}


def _write_files(rows: list[dict], args: argparse.Namespace) -> None:
    import csv

    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "positions": ";".join(row["positions"] or ())})
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


def _print_table(rows: list[dict], out_dir: Path | None) -> None:
    width = min(max(len(r["image"]) for r in rows), 48)
    print(f"{'image':<{width}} {'score':>8} {'thresh':>8} {'flag':>4}  where")
    for row in rows:
        name = row["image"] if len(row["image"]) <= width else "..." + row["image"][-(width - 3):]
        if row["error"]:
            print(f"{name:<{width}} {'-':>8} {'-':>8} {'ERR':>4}  {row['error']}")
            print(f"linesight: error: {row['error']}", file=sys.stderr)
            continue
        print(f"{name:<{width}} {row['score']:>8.4f} {row['threshold']:>8.4f} "
              f"{'YES' if row['is_anomalous'] else '':>4}  {', '.join(row['positions']) or '-'}")
    scored = [r for r in rows if not r["error"]]
    flagged = sum(1 for r in scored if r["is_anomalous"])
    failed = len(rows) - len(scored)
    where = f"; overlays in {out_dir}" if out_dir is not None else ""
    print(f"{len(scored)} image(s) scored, {flagged} flagged, {failed} unreadable{where}")


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
