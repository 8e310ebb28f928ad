"""``linesight eval``: the k-shot evaluation protocol on MVTec-AD, VisA, a folder dataset or the demo classes."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from linesight.commands._common import class_name, positive_int, share

_MODES = ("few_shot", "zero_shot", "fused")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate k-shot anomaly detection per class (image/pixel AUROC, AUPRO, F1-max, accuracy)",
        description=(
            "For every class, k in --shots and --seeds draws of k normal reference images: build the memory bank, "
            "score the test images and compute image AUROC, pixel AUROC, AUPRO, F1-max and the accuracy of the "
            "threshold-free decision; prints mean ± std over draws. --report DIR writes report.json, report.md, "
            "ROC plots and example overlays. --synthetic evaluates the built-in demo classes."
        ),
    )
    parser.add_argument("--data", type=Path, default=None, help="dataset root folder")
    parser.add_argument("--layout", choices=("auto", "mvtec", "visa", "folder"), default="auto",
                        help="dataset layout (default: detect)")
    parser.add_argument("--classes", nargs="+", type=class_name, default=None, metavar="CLASS", help="only these classes")
    parser.add_argument("--shots", nargs="+", type=positive_int, default=[1, 2, 4], metavar="K",
                        help="reference images per class (default: 1 2 4)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeded draws of the references (default 3)")
    parser.add_argument("--modes", nargs="+", default=["few_shot"], metavar="MODE",
                        help=f"any of {', '.join(_MODES)} (default: few_shot)")
    parser.add_argument("--report", type=Path, default=None, metavar="DIR", help="write the report into DIR")
    parser.add_argument("--synthetic", action="store_true",
                        help="export the built-in demo classes to a temporary folder and evaluate them")
    parser.add_argument("--synthetic-train", type=positive_int, default=8, help="normal images per demo class")
    parser.add_argument("--synthetic-test", type=positive_int, default=24, help="test images per demo class")
    parser.add_argument("--max-test", type=positive_int, default=None, help="cap test images per class")
    parser.add_argument("--no-rotations", action="store_true", help="don't add rotated references to the banks")
    parser.add_argument("--decoder", type=Path, default=None,
                        help="trained checkpoint folder (from `linesight train`) or its decoder.safetensors, "
                             "for zero_shot / fused")
    parser.add_argument("--llm", action="store_true",
                        help="also measure the LLM verdicts (accuracy of the text parsed as Yes/No, agreement with "
                             "the detector; positions: Yes answers on flagged frames naming the detector's "
                             "positions); uses the prompt learner of the --decoder checkpoint folder, else "
                             "LINESIGHT_CHECKPOINT_DIR, else a seeded untrained one. Slow: ~3 s per answer")
    parser.add_argument("--llm-images", type=positive_int, default=8,
                        help="test images per class for --llm (half good, half defective; default 8)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--realistic", action="store_true",
                        help="the realistic benchmark instead: real photographs shipped in installed packages at ~1.2 MP "
                        "with subtle defects of known masks (training/realistic.py); banks tile the frames (--tile-px auto)")
    parser.add_argument("--realistic-dir", type=Path, default=None, metavar="DIR",
                        help="where the realistic benchmark is written and reused (default LINESIGHT_DATA_DIR/realistic)")
    parser.add_argument("--tile-px", default=None, metavar="PX|auto|none",
                        help="tile frames larger than the model input into PX-pixel tiles (auto: at the model input size "
                        "when frames are 1.5x larger; none: squeeze the whole frame); default: auto with --realistic, "
                        "none otherwise")
    parser.add_argument("--part-variation-px", type=float, default=0.0, metavar="PX",
                        help="with --realistic: bend every part by a smooth random displacement of PX pixels "
                             "(parts that differ by nature, not only re-exposures of one; default 0)")
    parser.add_argument("--coreset-ratio", type=share, default=None, metavar="R",
                        help="keep this share (0-1] of each untiled bank's rows (greedy k-center coreset; "
                             "default: the bank builder's, 0.25; 1 keeps every row)")
    parser.add_argument("--stages", nargs="+", type=int, default=None, metavar="I",
                        help="encoder stages the banks match (default: the bank builder's default)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import tempfile

    from linesight.errors import ConfigError

    unknown = [m for m in args.modes if m not in _MODES]
    if unknown:
        raise ConfigError(f"--modes: unknown mode {unknown[0]!r}; choose from {', '.join(_MODES)}")
    if (args.synthetic, args.data is not None, args.realistic).count(True) != 1:
        raise ConfigError("give exactly one of --data DIR, --synthetic or --realistic")
    args.tile_px = _tile_px(args.tile_px, "auto" if args.realistic else None)
    if not 0.0 <= args.part_variation_px <= 50.0:
        raise ConfigError(f"--part-variation-px must be in [0, 50] pixels, got {args.part_variation_px}")
    if args.part_variation_px and not args.realistic:
        raise ConfigError("--part-variation-px only applies to --realistic")
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(f"--data: no such folder {str(args.data)!r}")
    if args.decoder is not None and args.decoder.is_dir():
        args.decoder = args.decoder / "decoder.safetensors"
    if args.decoder is not None and not args.decoder.is_file():
        raise ConfigError(f"--decoder: no such file {str(args.decoder)!r}")
    if args.synthetic:
        from training.datasets import export_synthetic_dataset

        with tempfile.TemporaryDirectory(prefix="linesight-eval-") as tmp:
            root = export_synthetic_dataset(tmp, args.classes, n_train=args.synthetic_train,
                                            n_test=max(2, args.synthetic_test), seed=0)
            return _run(args, root, "auto", label="built-in synthetic line (training/synthetic.py)")
    if args.realistic:
        from linesight.settings import load_settings
        from training.realistic import CLASSES, export_realistic_dataset

        bend = args.part_variation_px
        folder = args.realistic_dir or load_settings().data_dir / ("realistic" + (f"-bent-{bend:g}px" if bend else ""))
        classes = tuple(args.classes) if args.classes else CLASSES
        print(f"realistic benchmark in {folder} (written once, reused) ...", flush=True)
        root = export_realistic_dataset(folder, classes, part_variation_px=bend)
        return _run(args, root, "mvtec", label=f"realistic benchmark (training/realistic.py) in {folder}")
    return _run(args, args.data, args.layout)


def _tile_px(text: str | None, default: str | None) -> int | str | None:
    from linesight.errors import ConfigError

    value = default if text is None else text.strip().lower()
    if value in (None, "none", "off"):
        return None
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 32:
        raise ConfigError(f"--tile-px must be a number of pixels >= 32, 'auto' or 'none', got {text!r}")
    return number


def _run(args: argparse.Namespace, root: Path, layout: str, label: str | None = None) -> int:
    from linesight.settings import load_settings
    from model.factory import DetectorConfig, build_scoring_encoder
    from training.datasets import load_dataset
    from training.evaluate import EvalConfig, evaluate

    settings = load_settings()
    dataset = load_dataset(root, layout=layout, classes=args.classes)
    config = EvalConfig(
        shots=tuple(dict.fromkeys(args.shots)),
        seeds=args.seeds,
        modes=tuple(dict.fromkeys(args.modes)),
        rotations=False if args.no_rotations else None,
        max_test_images=args.max_test,
        tile_px=args.tile_px,
        stages=tuple(args.stages) if args.stages else None,
        coreset_ratio=args.coreset_ratio,
    )
    encoder = build_scoring_encoder(DetectorConfig.from_settings(settings))
    zero_shot_maps = None
    if args.decoder is not None:
        from training.evaluate import decoder_maps_from_checkpoint

        zero_shot_maps = decoder_maps_from_checkpoint(args.decoder, encoder)
    result = evaluate(dataset, encoder, config, zero_shot_maps=zero_shot_maps, progress=not args.no_progress)
    if args.llm:
        result.llm = _llm(args, settings, dataset, encoder, config)
    if label is not None:
        result.dataset_root = label  # the temporary export folder is gone after this command
    _print(result)
    if args.report is not None:
        from training.report import write_report

        written = write_report(result, args.report)
        print(f"report: {written['markdown'][0]} ({len(written['roc'])} ROC plots, {len(written['examples'])} overlays)")
    return 0


def checkpoint_folder(decoder: Path) -> Path:
    """The checkpoint folder of ``--decoder``, which names the folder or its decoder.safetensors.

    >>> checkpoint_folder(Path("/nowhere/ckpt/decoder.safetensors")).as_posix()
    '/nowhere/ckpt'
    """
    return decoder if decoder.is_dir() else decoder.parent


def _llm(args: argparse.Namespace, settings, dataset, encoder, config) -> dict:
    from pipeline.stream.verdicts import InspectionModel
    from training.llm_eval import evaluate_llm, llm_report

    checkpoint = checkpoint_folder(args.decoder) if args.decoder is not None else settings.checkpoint_dir
    model = InspectionModel.from_settings(settings.model_copy(update={"checkpoint_dir": checkpoint}), encoder=encoder)
    shots = config.shots[0]
    scores = evaluate_llm(dataset, encoder, model.gpt, shots=shots, images_per_class=args.llm_images,
                          max_new_tokens=settings.verdict_max_new_tokens, rotations=config.rotations,
                          progress=not args.no_progress)
    report = llm_report(scores, shots)
    print(f"LLM verdicts ({shots}-shot bank, prompt learner: {checkpoint or 'untrained, seeded'}):")
    print(f"{'class':<14} {'images':>6} {'accuracy':>9} {'agreement':>10} {'undecided':>10} {'positions':>16}")
    for name, row in [*report["classes"].items(), ("MACRO", report["macro"])]:
        placed = "-" if row["positions"] is None else f"{100 * row['positions']:.1f}% of {row['located']}"
        print(f"{name:<14} {row['images']:>6} {100 * row['accuracy']:>8.1f}% {100 * row['agreement']:>9.1f}% "
              f"{100 * row['undecided']:>9.1f}% {placed:>16}")
    return report


def _fmt(mean: float, std: float, name: str = "") -> str:
    from training.metrics import COUNT_NAMES

    if math.isnan(mean):
        return "      -     "
    return f"{mean:11.1f}" if name in COUNT_NAMES else f"{100 * mean:5.1f} ±{100 * std:4.1f}"


def _print(result) -> None:
    from training.metrics import METRIC_NAMES

    names = ("image AUROC", "pixel AUROC", "AUPRO", "F1-max", "accuracy", "precision", "recall", "TP", "FP", "TN", "FN")
    print(f"{'class':<14} {'mode':<9} {'k':>2}  " + "  ".join(f"{n:>11}" for n in names))
    for mode, k in result.settings():
        for name in result.classes:
            s = result.summary(name, mode, k)
            if s.draws:
                cells = "  ".join(_fmt(getattr(s.mean, n), getattr(s.std, n), n) for n in METRIC_NAMES)
                print(f"{name:<14} {mode:<9} {k:>2}  {cells}")
        m = result.macro(mode, k)
        cells = "  ".join(_fmt(getattr(m.mean, n), getattr(m.std, n), n) for n in METRIC_NAMES)
        print(f"{'MACRO':<14} {mode:<9} {k:>2}  {cells}")
    for mode, reason in result.skipped.items():
        print(f"skipped {mode}: {reason}")
