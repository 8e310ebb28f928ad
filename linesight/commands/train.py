"""``linesight train``: train the decoder, the prompt learner and E_img on synthetic anomalies (CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from linesight.commands._common import class_name, positive_float, positive_int

_PAPER_IMAGES_PER_CLASS = 6  # synthetic normal images per demo class with --paper (each gives one NSA pair per epoch)
# TrainConfig's defaults (the paper's values), shown in --help without importing torch at parser build (a test keeps
# them equal)
HELP_DEFAULTS = {"epochs": 3, "batch_size": 4, "lr": 1e-3, "seed": 0, "num_workers": 0, "prompt_map": "few_shot",
                 "bank_shots": (1, 2, 4), "banks_per_class": 6, "decision_weight": 0.0, "nsa_method": "nsa",
                 "skip_unseen": False, "with_description": False}
# What the command trains with unless --paper or the option is given: the run after which the LLM's own Yes/No
# matched the truth on 87.5 % of `eval --llm`'s 120 demo-class test images (README "LLM verdicts"; 420 steps,
# about 45 min on 2 cores). With the paper's values for 24 steps it was 43 % (30 images); at step 240 of this
# recipe 80 % (40 images).
RECIPE = {"epochs": 14, "decision_weight": 2.0, "nsa_method": "nsa+stain+scratch", "skip_unseen": True,
          "with_description": True}  # TrainConfig fields
RECIPE_IMAGES_PER_CLASS = 24


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = HELP_DEFAULTS
    parser = subparsers.add_parser(
        "train",
        help="train the text-aligned decoder and the prompt learner on synthetic (NSA) anomalies",
        description=(
            "Each batch pairs normal images (answer 'No') with NSA anomalies pasted from other normal images of "
            "the class (mask + 'Yes ... at the {pos}' answer). The decoder learns from focal + dice losses on its "
            "maps, the prompt learner and E_img from the answer cross-entropy through the frozen LLM; the encoder "
            "and the LLM stay frozen. A checkpoint folder is written after every epoch (the default "
            "<LINESIGHT_DATA_DIR>/checkpoint is found by every command; elsewhere, point LINESIGHT_CHECKPOINT_DIR "
            "at it; `linesight eval --llm --decoder DIR` reads its prompt learner and decoder)."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, default=None, help="dataset root: normal images from <class>/train/good")
    source.add_argument("--synthetic", action="store_true", help="train on the built-in demo classes")
    parser.add_argument("--layout", choices=("auto", "mvtec", "visa", "folder"), default="auto",
                        help="dataset layout of --data (default: detect)")
    parser.add_argument("--classes", nargs="+", type=class_name, default=None, metavar="CLASS",
                        help="product classes (default: all in --data, all demo classes with --synthetic)")
    parser.add_argument("--images-per-class", type=positive_int, default=None, metavar="N",
                        help=f"normal images per class (synthetic default {RECIPE_IMAGES_PER_CLASS}, "
                             f"{_PAPER_IMAGES_PER_CLASS} with --paper; --data: all)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="checkpoint folder (default: <LINESIGHT_DATA_DIR>/checkpoint, which every command then "
                             "uses while LINESIGHT_CHECKPOINT_DIR is unset)")
    parser.add_argument("--paper", action="store_true",
                        help="train with the paper's values (TrainConfig's defaults) instead of the measured recipe "
                             f"this command uses by default: {', '.join(f'{k}={v}' for k, v in RECIPE.items())}, "
                             f"images_per_class={RECIPE_IMAGES_PER_CLASS}")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"default {RECIPE['epochs']} ({defaults['epochs']} with --paper)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"normal/anomaly pairs per step (default {defaults['batch_size']})")
    parser.add_argument("--lr", type=positive_float, default=None, help=f"Adam learning rate (default {defaults['lr']})")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps in total")
    parser.add_argument("--seed", type=int, default=None, help=f"default {defaults['seed']}")
    parser.add_argument("--no-llm", action="store_true", help="train the decoder only (fast; no prompt learner)")
    parser.add_argument("--with-description", action=argparse.BooleanOptionalAction, default=None,
                        help="put the class description in the question, as `eval --llm` asks (longer LLM input: "
                             "slower; default on, off with --paper)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (step + optimizer)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"DataLoader processes making the anomalies (default {defaults['num_workers']})")
    parser.add_argument("--prompt-map", choices=("few_shot", "decoder"), default=None,
                        help="the anomaly map the prompt learner learns from: few_shot = the detector's map against a "
                             "bank of other normal images of the class, as the stream and `eval --llm` give it; "
                             f"decoder = the trained decoder's map (the paper). Default {defaults['prompt_map']}")
    parser.add_argument("--bank-shots", nargs="+", type=positive_int, default=None, metavar="K",
                        help="shots of the few-shot training banks, cycled over the banks (default "
                             f"{' '.join(map(str, defaults['bank_shots']))})")
    parser.add_argument("--banks-per-class", type=positive_int, default=None, metavar="N",
                        help=f"leave-out banks per class for --prompt-map few_shot (default {defaults['banks_per_class']})")
    parser.add_argument("--decision-weight", type=float, default=None, metavar="W",
                        help="extra cross-entropy weight on the answer's first token, Yes or No "
                             f"(default {RECIPE['decision_weight']}; {defaults['decision_weight']} with --paper: the "
                             "paper's plain answer loss)")
    parser.add_argument("--nsa-method", default=None, metavar="METHOD[+METHOD...]",
                        help="anomaly simulation: nsa (Poisson-blended patches, the paper), cutpaste, scratch, stain, or a "
                             f"mix drawn per pair (default {RECIPE['nsa_method']}; {defaults['nsa_method']} with --paper); on textures "
                             "Poisson-blended patches are mostly invisible to the few-shot map")
    parser.add_argument("--skip-unseen", action=argparse.BooleanOptionalAction, default=None,
                        help="no answer loss on images whose prompt map contradicts their truth (an anomaly the map does "
                             "not show above the threshold, a normal image it flags): the LLM reads the map (default on, "
                             "off with --paper)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="STEPS",
                        help="also write the checkpoint every N steps (default: after every epoch)")
    parser.add_argument("--log-every", type=positive_int, default=None, metavar="STEPS",
                        help="log losses, decision accuracy and s/step every N steps (default: off)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch threads (default: torch's, one per core); on a CPU shared with other work 1 "
                             "thread is faster (measured 2.4x under a load average of 13 on 2 cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.errors import ConfigError
    from linesight.settings import CHECKPOINT_FOLDER, load_settings
    from model.encoders import build_encoder
    from model.text_anchors import text_embedder_for
    from training.checkpoint import CONFIG_FILE
    from training.trainer import Trainer, folder_training_images, synthetic_training_images

    if not args.synthetic and args.data is None:
        raise ConfigError("give one of --data DIR or --synthetic")
    if args.data is not None and not args.data.is_dir():
        raise ConfigError(f"--data: no such folder {str(args.data)!r}")
    if args.images_per_class is not None and args.images_per_class < 2:
        raise ConfigError(f"--images-per-class must be >= 2 (NSA pastes from another image), got {args.images_per_class}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    settings = load_settings()
    out = args.out if args.out is not None else settings.data_dir / CHECKPOINT_FOLDER
    if args.resume and not (out / CONFIG_FILE).is_file():
        raise ConfigError(f"--resume: no checkpoint in {str(out)!r} (no {CONFIG_FILE})")
    config = train_config(args, settings.image_size_px)
    size = settings.image_size_px
    if args.synthetic:
        from training.synthetic import PRODUCT_CLASSES

        classes = args.classes or list(PRODUCT_CLASSES)
        images = synthetic_training_images(classes, _images_per_class(args), size, config.seed)
    else:
        images = folder_training_images(args.data, args.classes, size, args.layout, args.images_per_class)
    encoder = build_encoder(settings.encoder, settings.encoder_path, size)
    llm = None
    if not args.no_llm:
        from model.llm import load_llm

        llm = load_llm(getattr(settings, "llm_path", None))  # the LLM the stream's verdicts use
    from training.prompt_maps import default_bank_cache_dir

    trainer = Trainer(config, encoder, text_embedder_for(encoder), images, llm, progress=not args.no_progress,
                      bank_cache_dir=default_bank_cache_dir())
    print(f"training on {', '.join(f'{k} ({len(v)})' for k, v in images.items())} normal images: "
          f"{trainer.total_steps} steps of {config.batch_size} pairs, {'decoder only' if llm is None else 'decoder + prompt learner'}"
          + ("" if llm is None else f" (prompt learner on {config.prompt_map} maps)"), flush=True)
    result = trainer.fit(out, resume=args.resume)
    losses = "  ".join(f"{k} {v:.4f}" for k, v in result.final_losses.items())
    print(f"checkpoint: {result.checkpoint_dir} (step {result.steps}, epoch {result.epochs:.2f})")
    print(f"final losses (mean over the last epoch): {losses}")
    print(f"loss curve: {result.loss_curve}")
    print(f"took {result.elapsed_s:.1f} s, {result.images_per_s:.1f} images/s")
    print(f"evaluate: linesight eval --synthetic --modes few_shot zero_shot fused --decoder "
          f"{result.checkpoint_dir / 'decoder.safetensors'}")
    if llm is not None:
        print(f"LLM verdicts: linesight eval --synthetic --shots 1 --seeds 1 --llm --decoder {result.checkpoint_dir}; "
              f"chat and inspect --ask use it with LINESIGHT_CHECKPOINT_DIR={result.checkpoint_dir} (stream verdicts "
              "also with LINESIGHT_VERDICT_IMAGE_TOKENS=true)")
    return 0


def train_config(args: argparse.Namespace, image_size_px: int):
    """The TrainConfig of a parsed command line: the options given, else :data:`RECIPE` (or, with ``--paper``,
    TrainConfig's own defaults)."""
    from linesight.errors import ConfigError
    from training.trainer import TrainConfig

    if args.decision_weight is not None and not args.decision_weight >= 0:
        raise ConfigError(f"--decision-weight must be >= 0, got {args.decision_weight}")
    recipe = {} if args.paper else RECIPE
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "num_workers": args.workers, "prompt_map": args.prompt_map, "banks_per_class": args.banks_per_class,
             "bank_shots": tuple(args.bank_shots) if args.bank_shots else None,
             "decision_weight": args.decision_weight, "checkpoint_every": args.checkpoint_every,
             "log_every": args.log_every, "nsa_method": args.nsa_method, "skip_unseen": args.skip_unseen,
             "with_description": args.with_description}
    return TrainConfig(image_size_px=image_size_px, answer_loss=not args.no_llm, max_steps=args.max_steps,
                       **{**recipe, **{k: v for k, v in given.items() if v is not None}})


def _images_per_class(args: argparse.Namespace) -> int:
    if args.images_per_class is not None:
        return args.images_per_class
    return _PAPER_IMAGES_PER_CLASS if args.paper else RECIPE_IMAGES_PER_CLASS
