"""``linesight bank build|auto|list|learn|calibrate|sensitivity|activate``: per-class memory banks and hot swaps."""

from __future__ import annotations

import argparse
import json

from linesight.commands._common import class_name, existing_dir, positive_int, share


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bank",
        help="build, list and activate per-class memory banks",
        description=(
            "A bank holds the patch features of a few normal images of one product class plus its calibrated "
            "decision threshold (no manual threshold). Building makes a new version; activating a version swaps "
            "it into a running stream within LINESIGHT_BANK_POLL_INTERVAL_S."
        ),
    )
    sub = parser.add_subparsers(dest="bank_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="build a new bank version from a folder of normal images")
    build.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class name, e.g. 'washer'")
    build.add_argument("--images", type=existing_dir, required=True, help="folder of normal images (png/jpg/bmp)")
    build.add_argument("--shots", type=positive_int, default=None, help="use the first K images (default: all)")
    build.add_argument("--no-rotations", action="store_true", help="don't add 90/180/270 rotations (parts with a pose)")
    build.add_argument("--coreset-ratio", type=share, default=None,
                       help="keep this share (0-1] of an untiled bank's patches, a greedy k-center coreset "
                            "(default 0.25, measured in README; 1 keeps every patch)")
    build.add_argument("--no-activate", action="store_true", help="register without activating")
    build.set_defaults(handler=_build)

    auto = sub.add_parser(
        "auto", help="build a bank from the first frames of a class, no labelled image (cold start)",
        description=(
            "Reads the first N frames of the class from the frames topic (or --images DIR), scores them against each "
            "other (mutual scoring: a defect finds few similar patches in the other frames), builds and activates a "
            "bank from the K that scored most normal, and prints them with their scores. Veto a reference with "
            "--exclude and run again, or `bank activate` an earlier version."
        ),
    )
    auto.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class name")
    auto.add_argument("--frames", type=positive_int, default=None,
                      help="first N frames of the class (default LINESIGHT_COLDSTART_FRAMES)")
    auto.add_argument("--shots", type=positive_int, default=None,
                      help="K most normal frames promoted (default LINESIGHT_COLDSTART_SHOTS)")
    auto.add_argument("--images", type=existing_dir, default=None, help="read frames from this folder instead of Kafka")
    auto.add_argument("--exclude", nargs="+", default=[], metavar="FRAME",
                      help="frame ids / file names vetoed by the operator (never references)")
    auto.add_argument("--timeout-s", type=float, default=30.0, help="give up reading the topic after this long")
    auto.add_argument("--no-rotations", action="store_true", help="don't add 90/180/270 rotations (parts with a pose)")
    auto.add_argument("--no-activate", action="store_true", help="register without activating (review first)")
    auto.add_argument("--stream", action="store_true",
                      help="don't build now: register the class for cold start in the running stream, which scores "
                      "its frames against each other from now on and promotes the most normal of its first --frames "
                      "to a bank by itself (LINESIGHT_COLDSTART_CLASSES does the same from the settings)")
    auto.set_defaults(handler=_auto)

    listing = sub.add_parser("list", help="list bank versions")
    listing.add_argument("--class", dest="product_class", type=class_name, default=None, help="only this class")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    learn = sub.add_parser(
        "learn", help="fold frames marked false-alarm (linesight feedback ID false-alarm) into a new version",
        description="Builds a new version of the class's active bank whose references also hold every frame an "
        "operator marked as a false alarm since; the calibration is kept. The running stream swaps to it within "
        "LINESIGHT_BANK_POLL_INTERVAL_S, so the same kind of frame stops being flagged.",
    )
    learn.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class name")
    learn.add_argument("--no-activate", action="store_true", help="register without activating")
    learn.set_defaults(handler=_learn)

    calibrate = sub.add_parser(
        "calibrate", help="refine the active version's threshold from the stream's own scores (a new version)",
        description="Most frames on a line are normal: the median and spread of the scores the stream gave the "
        "class's last --frames frames set a refined threshold (median + 4 robust sigmas, within 30 %% of the "
        "bank-time one), saved as a new version with the same references. Undo with `bank activate C OLD`.",
    )
    calibrate.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class name")
    calibrate.add_argument("--frames", type=positive_int, default=500, help="newest scored frames to use (default 500)")
    calibrate.add_argument("--no-activate", action="store_true", help="register without activating")
    calibrate.set_defaults(handler=_calibrate)

    sensitivity = sub.add_parser(
        "sensitivity", help="set (or clear) an operator's threshold for a class (a new version)",
        description="Optional: the automatic threshold stands by default. --threshold X saves a new version with the "
        "same references deciding score > X (X in (0, 1]); self-calibration leaves it alone and `bank learn` keeps "
        "it. --clear saves a new version with the automatic calibration it replaced. The stream swaps within "
        "LINESIGHT_BANK_POLL_INTERVAL_S; `bank activate C OLD` undoes either.",
    )
    sensitivity.add_argument("--class", dest="product_class", type=class_name, required=True, help="product class name")
    which = sensitivity.add_mutually_exclusive_group(required=True)
    which.add_argument("--threshold", type=float, default=None, help="flag frames whose score is above this (0-1]")
    which.add_argument("--clear", action="store_true", help="back to the automatic threshold")
    sensitivity.add_argument("--no-activate", action="store_true", help="register without activating")
    sensitivity.set_defaults(handler=_sensitivity)

    activate = sub.add_parser("activate", help="activate a bank version (hot swap)")
    activate.add_argument("product_class", type=class_name, metavar="CLASS")
    activate.add_argument("version", type=positive_int, metavar="VERSION")
    activate.set_defaults(handler=_activate)


def _row(row) -> dict:
    return {
        "product_class": row.product_class,
        "version": row.version,
        "active": row.active,
        "shots": row.shots,
        "encoder": row.encoder,
        "threshold": round(float(row.calibration.get("threshold", float("nan"))), 5),
        "calibration": row.calibration.get("method", "balanced-accuracy-midpoint"),
        "calibrated_from": row.calibration.get("source_version"),  # the version it refined or overrode
        "created_at": row.created_at.isoformat(),
        "path": row.path,
        "reference_frames": None if row.reference_frames is None else list(row.reference_frames),
    }


def _build(args: argparse.Namespace) -> int:
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager, load_images

    manager = BankManager(load_settings())
    images = load_images(args.images, limit=args.shots)
    row = manager.build(
        args.product_class,
        images,
        rotations=not args.no_rotations,
        coreset_ratio=args.coreset_ratio,
        activate=not args.no_activate,
    )
    print(json.dumps(_row(row)))
    return 0


def _learn(args: argparse.Namespace) -> int:
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager

    row = BankManager(load_settings()).learn_from_feedback(args.product_class, activate=not args.no_activate)
    if row is None:
        print(f"no new false alarms of class {args.product_class!r} to learn from")
        return 0
    print(json.dumps(_row(row)))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager

    row = BankManager(load_settings()).self_calibrate(args.product_class, frames=args.frames,
                                                      activate=not args.no_activate)
    print(json.dumps(_row(row)))
    return 0


def _sensitivity(args: argparse.Namespace) -> int:
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager

    threshold = None if args.clear else args.threshold
    row = BankManager(load_settings()).set_sensitivity(args.product_class, threshold, activate=not args.no_activate)
    print(json.dumps(_row(row)))
    return 0


def _auto(args: argparse.Namespace) -> int:
    from linesight.errors import ConfigError
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager
    from pipeline.services.coldstart import auto_build, frames_from_folder, read_class_frames

    settings = load_settings()
    count = args.frames or settings.coldstart_frames
    shots = args.shots or settings.coldstart_shots
    if args.stream:
        return _register_stream(args, settings, count, shots)
    if args.images is not None:
        frames = [f for f in frames_from_folder(args.images) if f.name not in set(args.exclude)][:count]
        source = str(args.images)
    else:
        from connectors.tansu import broker_for

        with broker_for(settings) as bootstrap:
            frames = read_class_frames(
                bootstrap, settings.frames_topic, args.product_class, count, timeout_s=args.timeout_s,
                max_frame_bytes=settings.max_frame_bytes, max_frame_pixels=settings.max_frame_pixels,
                security=settings.kafka_security, exclude=args.exclude,
            )
        source = f"topic {settings.frames_topic!r}"
    if len(frames) < count:
        raise ConfigError(
            f"class {args.product_class!r}: found {len(frames)} frame(s) in {source}, --frames asks for {count}; "
            "wait for more frames or lower --frames"
        )
    result = auto_build(
        BankManager(settings), args.product_class, frames, shots=shots, rotations=not args.no_rotations,
        activate=not args.no_activate, exclude=args.exclude, window=settings.coldstart_window,
    )
    print(json.dumps(result.to_dict()))
    return 0


def _register_stream(args: argparse.Namespace, settings, count: int, shots: int) -> int:
    from linesight.data_folder import open_repository
    from linesight.errors import ConfigError

    if args.images is not None or args.exclude or args.no_activate:
        raise ConfigError("--stream registers the class for the running stream; --images, --exclude and "
                          "--no-activate apply to a build now (drop --stream)")
    if count < max(4, 2 * shots):
        raise ConfigError(f"--frames {count} must be at least max(4, 2 * --shots) = {max(4, 2 * shots)}")
    repository = open_repository(settings, write=True)
    active = repository.active_banks().get(args.product_class)
    if active is not None:
        raise ConfigError(f"class {args.product_class!r} already has an active bank (v{active.version}); cold start "
                          "is for a class with none: `bank auto --class C` rebuilds from the stream's frames now")
    row = repository.register_cold_start(args.product_class, frames=count, shots=shots, registered_by="cli")
    print(json.dumps({
        "product_class": row.product_class, "state": row.state, "frames": row.frames, "shots": row.shots,
        "registered_by": row.registered_by,
        "message": f"the running stream scores {row.product_class!r} against its own recent frames from its next "
                   f"frame and promotes the {row.shots} most normal of its first {row.frames} to a bank by itself",
    }))
    return 0


def _list(args: argparse.Namespace) -> int:
    from linesight.data_folder import open_repository
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager

    settings = load_settings()
    manager = BankManager(settings, repository=open_repository(settings))  # read-only: never migrates
    rows = [_row(row) for row in manager.list(args.product_class)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cold = [c for c in manager.repository.cold_starts() if args.product_class in (None, c.product_class)]
    if not rows and not cold:
        print("no banks yet: build one with `linesight bank build --class C --images DIR`")
        return 0
    if rows:
        print(f"{'class':<16} {'ver':>4} {'active':>6} {'shots':>5} {'threshold':>9}  {'calibration':<26} created"
              "              references")
    for r in rows:
        method = r["calibration"] + (f" v{r['calibrated_from']}" if r["calibrated_from"] is not None else "")
        refs = ",".join(r["reference_frames"] or []) or "-"
        print(f"{r['product_class']:<16} {r['version']:>4} {'*' if r['active'] else '':>6} {r['shots']:>5} "
              f"{r['threshold']:>9.4f}  {method:<26} {r['created_at'][:19]}  {refs}")
    for c in cold:
        scored = manager.repository.count_scored(c.product_class, "cold-start")
        print(f"cold start {c.product_class}: {c.state}, {scored} of {c.frames} frames scored, {c.shots} shots"
              + (f", promoted to v{c.promoted_version}" if c.promoted_version else "") + (f" ({c.detail})" if c.detail else ""))
    return 0


def _activate(args: argparse.Namespace) -> int:
    from linesight.data_folder import open_repository
    from linesight.settings import load_settings
    from pipeline.services.banks import BankManager

    settings = load_settings()
    row = BankManager(settings, repository=open_repository(settings)).activate(args.product_class, args.version)
    print(json.dumps(_row(row)))
    return 0
