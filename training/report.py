"""Write an evaluation to a folder: ``report.json``, ``report.md``, ROC plots and example overlays.

``report.json``::

    {"macro": {"mode": "few_shot", "shots": 1, "image_auroc": 0.97, "pixel_auroc": ..., "aupro": ...,
               "f1_max": ..., "accuracy": ..., "std": {...same keys...}, "draws": 3},
     "settings": [{"mode", "shots", "mean": {...}, "std": {...}, "draws"}, ...],
     "classes": {"<class>": {"<mode>": {"<k>": {"mean": {...}, "std": {...}, "draws": n}}}},
     "skipped": {"<mode>": "<reason>"}, "dataset": ..., "layout": ..., "encoder": ..., "config": {...},
     "llm": {"shots": k, "macro": {"accuracy", "agreement", "undecided", "positions", "images", "located"},
             "classes": {...}}}

``llm`` is there only when the evaluation ran with ``--llm`` (training/llm_eval.py).

``macro`` is the headline setting: few_shot at the smallest k if run, else the first one with
results. Metrics are fractions in [0, 1]; NaN (not computable, e.g. no masks) is written as null.
``report.md`` shows percentages next to AnomalyGPT's published figures (theirs, on MVTec-AD / VisA).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from training.evaluate import EvaluationResult, Example, Summary
from training.metrics import COUNT_NAMES, METRIC_NAMES

__all__ = ["PUBLISHED", "overlay_image", "report_dict", "write_report"]

# docs/method.md, "Published results to compare with": image AUROC / pixel AUROC / accuracy in %, None = not published
PUBLISHED: list[tuple[str, str, str, tuple[float | None, ...]]] = [
    ("1-shot", "PatchCore", "MVTec-AD", (83.4, 92.0, None)),
    ("1-shot", "WinCLIP+", "MVTec-AD", (93.1, 95.2, None)),
    ("1-shot", "AnomalyGPT", "MVTec-AD", (94.1, 95.3, 86.1)),
    ("1-shot", "AnomalyDINO", "MVTec-AD", (96.6, 96.8, None)),
    ("4-shot", "AnomalyGPT", "MVTec-AD", (96.3, 96.2, 85.0)),
    ("4-shot", "AnomalyDINO", "MVTec-AD", (97.7, 97.2, None)),
    ("1-shot", "PatchCore", "VisA", (79.9, 95.4, None)),
    ("1-shot", "WinCLIP+", "VisA", (83.8, 96.4, None)),
    ("1-shot", "AnomalyGPT", "VisA", (87.4, 96.2, 77.4)),
    ("1-shot", "AnomalyDINO", "VisA", (87.4, 97.8, None)),
    ("4-shot", "AnomalyGPT", "VisA", (90.6, 96.7, 77.7)),
    ("4-shot", "AnomalyDINO", "VisA", (92.6, 98.2, None)),
    ("unsupervised", "AnomalyGPT", "MVTec-AD", (97.4, 93.1, 93.3)),
]
_LABELS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "f1_max": "F1-max",
           "accuracy": "accuracy", "precision": "precision", "recall": "recall", "true_positives": "TP",
           "false_positives": "FP", "true_negatives": "TN", "false_negatives": "FN"}


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _summary(summary: Summary) -> dict:
    return {
        "mean": {n: _num(getattr(summary.mean, n)) for n in METRIC_NAMES},
        "std": {n: _num(getattr(summary.std, n)) for n in METRIC_NAMES},
        "draws": summary.draws,
    }


def report_dict(result: EvaluationResult) -> dict:
    """The ``report.json`` content as a dict (see the module docstring)."""
    settings = result.settings()
    entries = [{"mode": m, "shots": k, **_summary(result.macro(m, k))} for m, k in settings]
    few_shot = [e for e in entries if e["mode"] == "few_shot"]
    headline = min(few_shot, key=lambda e: e["shots"]) if few_shot else (entries[0] if entries else None)
    macro: dict = {"mode": None, "shots": None, **dict.fromkeys(METRIC_NAMES), "std": {}, "draws": 0}
    if headline:
        macro = {"mode": headline["mode"], "shots": headline["shots"], **headline["mean"], "std": headline["std"],
                 "draws": headline["draws"]}
    classes: dict = {}
    for name in result.classes:
        for mode, k in settings:
            summary = result.summary(name, mode, k)
            if summary.draws:
                classes.setdefault(name, {}).setdefault(mode, {})[str(k)] = _summary(summary)
    config = asdict(result.config)
    return {
        "macro": macro,
        "settings": entries,
        "classes": classes,
        "skipped": dict(result.skipped),
        "dataset": result.dataset_root,
        "layout": result.layout,
        "encoder": result.encoder_name,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        **({"llm": result.llm} if result.llm is not None else {}),
    }


def write_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, list[Path]]:
    """Write report.json, report.md, ``roc_<mode>_<k>shot.png`` and ``examples/*.png`` into ``out_dir``.

    Returns the written paths by kind ("json", "markdown", "roc", "examples").
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    content = report_dict(result)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(content, indent=2) + "\n")
    rocs = _roc_plots(result, out)
    examples = _overlays(result, out / "examples")
    md_path = out / "report.md"
    md_path.write_text(_markdown(result, content, rocs, examples, out))
    return {"json": [json_path], "markdown": [md_path], "roc": rocs, "examples": examples}


def _pct(mean: float | None, std: float | None = None, name: str | None = None) -> str:
    if mean is None:
        return "-"
    if name in COUNT_NAMES:  # confusion counts: mean over draws, not a percentage
        return f"{mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"


def _markdown(result: EvaluationResult, content: dict, rocs: list[Path], examples: list[Path], out: Path) -> str:
    header = "| " + " | ".join(_LABELS[n] for n in METRIC_NAMES) + " |"
    lines = [
        "# linesight evaluation",
        "",
        f"Dataset `{result.dataset_root}` (layout {result.layout}), encoder `{result.encoder_name}`, "
        f"classes: {', '.join(result.classes)}. {result.config.seeds} seeded draw(s) of the k reference images; "
        "figures in %, mean ± std over draws (macro: mean over classes within a draw). '-' = not computable "
        "(e.g. a class without masks has no pixel metrics).",
        "",
        "## Macro (ours)",
        "",
        "| mode | k | " + header[2:],
        "|---|---|" + "---|" * len(METRIC_NAMES),
    ]
    for e in content["settings"]:
        cells = " | ".join(_pct(e["mean"][n], e["std"][n], n) for n in METRIC_NAMES)
        lines.append(f"| {e['mode']} | {e['shots']} | {cells} |")
    for mode, reason in content["skipped"].items():
        lines.append(f"| {mode} | - | skipped: {reason} |" + " |" * (len(METRIC_NAMES) - 1))
    lines += ["", "## Per class (ours)", "", "| class | mode | k | " + header[2:],
              "|---|---|---|" + "---|" * len(METRIC_NAMES)]
    for name, modes in content["classes"].items():
        for mode, per_k in modes.items():
            for k, s in per_k.items():
                cells = " | ".join(_pct(s["mean"][n], s["std"][n], n) for n in METRIC_NAMES)
                lines.append(f"| {name} | {mode} | {k} | {cells} |")
    if "llm" in content:
        llm = content["llm"]
        lines += ["", f"## LLM verdicts ({llm['shots']}-shot bank, balanced test subset)", "",
                  "accuracy: the plain question, the LLM's answer parsed as Yes/No against the ground truth; "
                  "agreement: the stream's verdict prompt (with the detector's facts) agrees with the detector; "
                  "positions: of the plain answers saying Yes on frames the detector flagged, the share naming "
                  "exactly the detector's positions.", "",
                  "| class | images | accuracy | agreement | undecided | positions (of located) |",
                  "|---|---|---|---|---|---|"]
        for name, row in [*llm["classes"].items(), ("MACRO", llm["macro"])]:
            shown = "-" if row.get("positions") is None else f"{_pct(row['positions'])} (of {row.get('located', 0)})"
            lines.append(f"| {name} | {row['images']} | {_pct(row['accuracy'])} | {_pct(row['agreement'])} | "
                         f"{_pct(row['undecided'])} | {shown} |")
    lines += [
        "",
        "## Published figures (theirs, for context)",
        "",
        "These are the papers' numbers **on MVTec-AD and VisA**, not on this dataset; compare only when "
        "the dataset above is one of those (docs/method.md).",
        "",
        "| setting | method | dataset | image AUROC | pixel AUROC | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for setting, method, data, figures in PUBLISHED:
        cells = " | ".join("-" if f is None else f"{f:.1f}" for f in figures)
        lines.append(f"| {setting} | {method} (theirs) | {data} | {cells} |")
    if rocs:
        lines += ["", "## ROC curves (first draw)", ""] + [f"![{p.stem}]({p.relative_to(out)})" for p in rocs]
    if examples:
        lines += ["", "## Examples (heat map over the image, ground truth contour in green)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out)})" for p in examples]
    return "\n".join(lines) + "\n"


def _roc_plots(result: EvaluationResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths = []
    for mode, k in result.settings():
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        drawn = 0
        for name in result.classes:
            curve = result.curves.get((name, mode, k))
            if curve is None or curve.labels.min() == curve.labels.max():
                continue  # one label only: no ROC
            fpr, tpr, _ = roc_curve(curve.labels, curve.scores)
            auc = float(np.trapezoid(tpr, fpr))
            ax.plot(fpr, tpr, label=f"{name} ({100 * auc:.1f})")
            drawn += 1
        if drawn:
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
                   title=f"image ROC, {mode}, {k}-shot")
            ax.legend(loc="lower right", fontsize=8)
            path = out / f"roc_{mode}_{k}shot.png"
            fig.savefig(path, bbox_inches="tight")
            paths.append(path)
        plt.close(fig)
    return paths


def _overlays(result: EvaluationResult, out: Path) -> list[Path]:
    paths = []
    counters: dict[str, int] = {}
    scale: dict[tuple[str, str, int], float] = {}  # one colour scale per class and setting
    for ex in result.examples:
        key = (ex.product_class, ex.mode, ex.shots)
        scale[key] = max(scale.get(key, 1e-6), float(ex.anomaly_map.max()))
    for ex in result.examples:
        kind = "hit" if ex.is_hit else "miss"
        stem = f"{ex.product_class}_{ex.mode}_{ex.shots}shot_{kind}"
        counters[stem] = counters.get(stem, 0) + 1
        path = out / f"{stem}{counters[stem]}.png"
        out.mkdir(parents=True, exist_ok=True)
        _write_overlay(ex, path, scale[(ex.product_class, ex.mode, ex.shots)])
        paths.append(path)
    return paths


def overlay_image(image: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """The one renderer (:func:`model.overlay.render_overlay`) with the ground-truth contour in green; uint8 RGB.

    An example keeps no threshold, so the heat is drawn over the whole map (threshold 0), yellow to
    red at ``vmax`` (one scale per class and setting).

    >>> overlay_image(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), np.zeros((8, 8))).shape
    (8, 8, 3)
    """
    from model.overlay import render_overlay

    return render_overlay(image, anomaly_map, mask, threshold=0.0, full_scale=max(vmax, 1e-6),
                          outline_rgb=(0, 255, 0))


def _write_overlay(ex: Example, path: Path, vmax: float) -> None:
    import cv2

    panel = np.concatenate([ex.image, overlay_image(ex.image, ex.anomaly_map, ex.mask, vmax)], axis=1)
    caption = f"{'defect' if ex.label else 'good'} -> {'yes' if ex.decision else 'no'}  score {ex.score:.3f}"
    bar = np.full((22, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.concatenate([bar, panel], axis=0)[:, :, ::-1])
