"""Seconds per LLM verdict and tokens/s: one at a time (the old path) vs stopped early vs batched.

    .venv/bin/python -m pipeline.services.bench_verdicts --jobs 16 --rounds 2 --threads 1

The packaged SmolLM2-135M with a seeded (untrained) prompt learner, random anomaly maps and image
vectors and a mix of detector facts. The configurations alternate within each round so a shared,
loaded host slows them alike; compare figures of the same run only. Not a test: prints a table and,
as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from model.anomalygpt import AnomalyGPT, DetectorFacts, _verdict_result
from model.llm import load_llm
from model.prompt_learner import PromptLearner

__all__ = ["main", "verdict_jobs"]

_FACTS = (
    DetectorFacts(True, ("top left",), 1, "bottle"),
    DetectorFacts(False, (), 0, "brick"),
    DetectorFacts(True, ("center", "bottom right"), 2, "washer"),
    DetectorFacts(True, ("left",), 1, "grass"),
    DetectorFacts(True, ("bottom",), 1, "gravel"),
    DetectorFacts(True, ("top right",), 1, "bracket"),
)
_GLOBAL_DIM = 320  # EfficientNet-Lite0's global vector
_MAP_PX = 224


def verdict_jobs(count: int, seed: int = 0) -> list[tuple[DetectorFacts, torch.Tensor, torch.Tensor]]:
    """``count`` (facts, anomaly map (S, S), global vector (C,)) triples, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (_FACTS[index % len(_FACTS)], torch.rand(_MAP_PX, _MAP_PX, generator=generator),
         torch.randn(_GLOBAL_DIM, generator=generator))
        for index in range(count)
    ]


def _run(gpt: AnomalyGPT, mode: str, batch: int, jobs: list, max_new_tokens: int) -> dict[str, Any]:
    llm = gpt.llm
    started = time.perf_counter()
    results = []
    if mode == "plain":  # the path before issue 10: one at a time, until max_new_tokens or "###"
        for facts, anomaly_map, vector in jobs:
            text = llm.generate(gpt.llm_input(anomaly_map, vector, _description(facts)).inputs_embeds, max_new_tokens)
            results.append(_verdict_result(facts, text))
    elif mode == "text":  # no E_img / E_prompt: the facts alone (batched)
        text_only = AnomalyGPT(llm, None)
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            results += text_only.verdict_batch([j[0] for j in chunk], [None] * len(chunk), [None] * len(chunk),
                                               max_new_tokens)
    elif batch == 1:
        results = [gpt.verdict(facts, m, v, max_new_tokens) for facts, m, v in jobs]
    else:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            results += gpt.verdict_batch([j[0] for j in chunk], [j[1] for j in chunk], [j[2] for j in chunk],
                                         max_new_tokens)
    elapsed_s = time.perf_counter() - started
    tokens = sum(len(llm.token_ids(r.text)) for r in results)
    return {"s": elapsed_s, "tokens": tokens, "agreed": sum(r.agrees for r in results), "texts": [r.text for r in results]}


def _description(facts: DetectorFacts) -> str:
    from model.anomalygpt import facts_description

    return facts_description(facts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns (and prints last) the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16, help="verdicts per configuration and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the verdict actor uses 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16], help="batch sizes of the new path")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--no-plain", action="store_true", help="skip the old one-at-a-time path")
    parser.add_argument("--text-only", action="store_true", help="also time text-only prompts (no E_img, E_prompt)")
    parser.add_argument("--bf16", action="store_true", help="run the LLM in bfloat16")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    llm = load_llm()
    if args.bf16:
        llm.model.to(torch.bfloat16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gpt = AnomalyGPT(llm, PromptLearner(llm.hidden_size, _GLOBAL_DIM).eval())
    jobs = verdict_jobs(args.jobs)
    configs = ([("plain", 1)] if not args.no_plain else []) + [("stop", b) for b in args.batches]
    configs += [("text", b) for b in args.batches if b > 1] if args.text_only else []
    totals = {f"{m}@{b}": {"s": 0.0, "tokens": 0, "agreed": 0, "n": 0} for m, b in configs}
    texts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for mode, batch in configs:
            out = _run(gpt, mode, batch, jobs, args.max_new_tokens)
            total = totals[f"{mode}@{batch}"]
            for key in ("s", "tokens", "agreed"):
                total[key] += out[key]
            total["n"] += len(jobs)
            texts[f"{mode}@{batch}"] = out["texts"]
    summary: dict[str, Any] = {"threads": args.threads, "jobs": args.jobs, "rounds": args.rounds}
    print(f"{'config':10} {'s/verdict':>10} {'tokens/s':>9} {'tokens/verdict':>15} {'agreed':>7}")
    for name, total in totals.items():
        row = {
            "s_per_verdict": round(total["s"] / total["n"], 3),
            "tokens_per_s": round(total["tokens"] / total["s"], 1),
            "tokens_per_verdict": round(total["tokens"] / total["n"], 1),
            "agreed": round(total["agreed"] / total["n"], 3),
        }
        summary[name] = row
        print(f"{name:10} {row['s_per_verdict']:>10} {row['tokens_per_s']:>9} {row['tokens_per_verdict']:>15} "
              f"{row['agreed']:>7}")
    stopped = {name: t for name, t in texts.items() if name.startswith("stop@") and name != "text"}
    summary["batched_equals_one_at_a_time"] = len({tuple(t) for t in stopped.values()}) <= 1
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
