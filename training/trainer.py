"""Train the text-aligned decoder, the prompt learner and E_img on synthetic anomalies, on a CPU.

docs/method.md "Training data and losses": each batch pairs normal images (zero mask, "No" answer)
with their NSA anomalies (mask, "Yes ... at the {pos}" answer); loss = CE(answer tokens) + sum over
stages (Focal(gamma=2) + Dice), weights 1; Adam lr 1e-3; encoder and LLM frozen. One step, P pairs:

    encoder (no_grad; normal images' features cached once)  -> stage features, global vectors
    decoder(features, F_text of each image's class)         -> stage maps    -> focal + dice vs masks
    M: few-shot map against a leave-out bank (prompt_map="few_shot", training/prompt_maps.py),
       or the decoder's map (prompt_map="decoder", the paper's training), in threshold units
    prompt learner(M, global vector) -> E_img, E_prompt      -> build_llm_input + answer embeddings
    frozen LLM -> logits at the answer positions             -> CE (labels -100 everywhere else)
                                                                + decision_weight x CE of the first
                                                                  answer token (Yes / No)

The stream and ``linesight eval --llm`` give the prompt learner few-shot maps, so "few_shot" is the
default: a learner trained on the decoder's maps answers at chance on them (README "LLM verdicts").

Determinism: parameters are initialised from ``seed``; batch b of epoch e is a pure function of
(seed, e, b) (pair order and every NSA draw are seeded per pair), so a run resumed from a checkpoint
at step s continues exactly like an uninterrupted one.

>>> trainer = Trainer(TrainConfig(epochs=1), encoder, MiniLMTextEmbedder(), images, llm)  # doctest: +SKIP
>>> trainer.fit("out/checkpoint").final_losses  # doctest: +SKIP
{'total': 1.93, 'focal': 0.05, 'dice': 1.21, 'answer': 0.67}
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from linesight.errors import ConfigError
from model.anomalygpt import QUESTION, build_llm_input, default_description
from model.decoder import TextAlignedDecoder, load_state_checked
from model.prompt_learner import DECISION_LEVEL, PromptLearner, PromptTokens
from model.text_anchors import TextEmbedder, text_anchors
from training.checkpoint import (
    CONFIG_FILE,
    LOSS_CURVE_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    write_loss_curve,
)
from training.losses import IGNORE_INDEX, LossBreakdown, LossWeights, anomalygpt_loss
from training.nsa import METHODS, AnomalySimulator
from training.qa import qa_pair

__all__ = ["Batch", "TrainConfig", "TrainResult", "Trainer", "folder_training_images", "synthetic_training_images"]

log = logging.getLogger(__name__)
_TRAIN_SEED_OFFSET = 1_000_003  # synthetic training images never coincide with `linesight eval --synthetic`'s
_RESUME_KEYS = ("batch_size", "image_size_px", "seed", "answer_loss", "answer_grad_to_decoder",
                "with_description", "nsa_method", "prompt_map", "bank_shots", "banks_per_class", "skip_unseen")
_BEFORE_KEYS = {"prompt_map": "decoder", "skip_unseen": False}  # what a checkpoint written before a key existed trained with
PROMPT_MAPS = ("few_shot", "decoder")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (the paper's values where it gives them, docs/method.md).

    >>> TrainConfig(epochs=1, batch_size=2).lr
    0.001
    """

    epochs: int = 3  # passes over all (normal, NSA anomaly) pairs; paper: 50 on a GPU
    batch_size: int = 4  # pairs per step, i.e. 2x images; paper: 16
    lr: float = 1e-3  # Adam (paper)
    image_size_px: int = 224  # model input side; must equal the encoder's
    focal_weight: float = 1.0  # paper: all loss weights 1
    dice_weight: float = 1.0
    answer_weight: float = 1.0
    focal_gamma: float = 2.0  # paper: Focal(gamma = 2)
    answer_loss: bool = True  # CE through the frozen LLM; False = decoder only (--no-llm): fast, no LLM
    answer_grad_to_decoder: bool = False  # the paper is silent; False: M enters the prompt learner detached
    with_description: bool = False  # the method's optional class description in the question (~+30 tokens)
    nsa_method: str = "nsa"  # anomaly simulation (training.nsa.METHODS), or a mix drawn per pair: "nsa+stain"
    seed: int = 0  # parameter init, pair order and every NSA draw
    max_steps: int | None = None  # stop after this many optimizer steps in total (None: all epochs)
    num_workers: int = 0  # DataLoader processes making NSA anomalies (0: in this process; 2 cores here)
    cache_features: bool = True  # encode each normal image once (~310 KB per image at 224 px)
    prompt_map: str = "few_shot"  # M for the prompt learner: "few_shot" (as inference) or "decoder" (paper)
    bank_shots: tuple[int, ...] = (1, 2, 4)  # shots of the few-shot training banks (cycled over the banks)
    banks_per_class: int = 6  # calibrated leave-out banks per class for prompt_map="few_shot"
    decision_weight: float = 0.0  # extra CE weight on the answer's first token (Yes / No); paper: none
    checkpoint_every: int | None = None  # also checkpoint every N steps (None: after each epoch only)
    log_every: int = 0  # log losses, decision accuracy and s/step every N steps (0: off)
    skip_unseen: bool = False  # no answer loss on images whose prompt map contradicts their truth (see train_step)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "image_size_px"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "focal_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("focal_weight", "dice_weight", "answer_weight", "decision_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or None, got {self.max_steps!r}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers!r}")
        unknown = [m for m in self.nsa_method.split("+") if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown nsa_method {unknown[0]!r} in {self.nsa_method!r}; choose from {list(METHODS)} "
                              "(a mix joined by '+')")
        if self.prompt_map not in PROMPT_MAPS:
            raise ConfigError(f"unknown prompt_map {self.prompt_map!r}; choose one of {list(PROMPT_MAPS)}")
        object.__setattr__(self, "bank_shots", tuple(self.bank_shots))
        if not self.bank_shots or any(not isinstance(k, int) or k < 1 for k in self.bank_shots):
            raise ConfigError(f"bank_shots must be whole numbers >= 1, got {self.bank_shots!r}")
        if self.banks_per_class < 2:
            raise ConfigError(f"banks_per_class must be >= 2 (each image is left out of one), got {self.banks_per_class!r}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1 or None, got {self.checkpoint_every!r}")
        if self.log_every < 0:
            raise ConfigError(f"log_every must be >= 0, got {self.log_every!r}")

    @property
    def loss_weights(self) -> LossWeights:
        """The weights of the three loss terms."""
        return LossWeights(self.focal_weight, self.dice_weight, self.answer_weight if self.answer_loss else 0.0)


class Batch(NamedTuple):
    """One step's images: the P normal images first, then their P anomalies."""

    classes: tuple[str, ...]  # (2P,) product class of each image
    normal_keys: tuple[tuple[str, int], ...]  # (P,) (class, index) of the normal images
    anomalies: tuple[np.ndarray, ...]  # (P,) uint8 RGB (S, S, 3)
    masks: torch.Tensor  # (2P, S, S) float {0, 1}: zeros for the normal images
    answers: tuple[str, ...]  # (2P,) docs/method.md answer sentences (training/qa.py)
    draws: tuple[int, ...] = ()  # (P,) seeded draw per pair: which leave-out bank scores it (few-shot maps)


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    checkpoint_dir: Path
    loss_curve: Path
    steps: int  # optimizer steps done in total (including resumed ones)
    epochs: float
    final_losses: dict[str, float]  # mean of each term over the last epoch's steps
    elapsed_s: float  # this call's wall time
    images_per_s: float  # training throughput of this call (checkpointing excluded)


def synthetic_training_images(
    classes: Sequence[str], images_per_class: int = 8, image_size_px: int = 224, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Normal images of the built-in synthetic classes, disjoint from the evaluation's (other seeds).

    >>> {k: len(v) for k, v in synthetic_training_images(["washer"], 2, 64).items()}
    {'washer': 2}
    """
    from training.synthetic import normal_images

    if images_per_class < 2:
        raise ConfigError(f"images_per_class must be >= 2 (NSA pastes from another image), got {images_per_class}")
    return {name: normal_images(name, images_per_class, image_size_px, seed=_TRAIN_SEED_OFFSET + seed)
            for name in dict.fromkeys(classes)}


def folder_training_images(
    root: Path | str, classes: Sequence[str] | None = None, image_size_px: int = 224,
    layout: str = "auto", max_per_class: int | None = None,
) -> dict[str, list[np.ndarray]]:
    """The normal training images (``<class>/train/good``) of an MVTec / VisA / folder dataset, resized."""
    from training.datasets import load_dataset

    dataset = load_dataset(root, layout=layout, classes=classes)
    return {name: [s.load_image(image_size_px) for s in data.train[:max_per_class]]
            for name, data in dataset.classes.items()}


class _EpochPairs(torch.utils.data.Dataset):
    """Pair i of epoch e: (class, normal index, NSA anomaly, mask, draw); seeded by (seed, e, i) alone.

    ``simulators`` holds one simulator per method of the class; a pair's method is drawn (one method: it).
    """

    def __init__(self, simulators: Mapping[str, Sequence[AnomalySimulator]], seed: int, epoch: int,
                 start: int = 0) -> None:
        keys = [(name, index) for name, sims in simulators.items() for index in range(len(sims[0].images))]
        order = np.random.default_rng([seed, epoch, 0]).permutation(len(keys))
        self.keys = [keys[i] for i in order]
        self.simulators, self.seed, self.epoch, self.start = simulators, seed, epoch, start

    def __len__(self) -> int:
        return len(self.keys) - self.start

    def __getitem__(self, item: int) -> tuple[str, int, np.ndarray, np.ndarray, int]:
        position = self.start + item
        name, index = self.keys[position]
        simulators = self.simulators[name]
        simulator = simulators[int(np.random.default_rng([self.seed, self.epoch, position, 3]).integers(len(simulators)))]
        simulator.rng = np.random.default_rng([self.seed, self.epoch, position, 1])  # this pair's own stream
        image, mask = simulator.sample(index)
        draw = int(np.random.default_rng([self.seed, self.epoch, position, 2]).integers(1 << 30))
        return name, index, image, mask, draw


class Trainer:
    """Trains decoder, prompt learner and E_img with the encoder and the LLM frozen.

    ``images``: normal uint8 RGB images per class (>= 2 each). ``llm`` is required unless
    ``config.answer_loss`` is False. ``decoder`` / ``prompt_learner`` default to fresh modules
    initialised from ``config.seed`` (pass small ones in tests). ``bank_cache_dir`` keeps the few-shot
    training banks between runs (training/prompt_maps.py).
    """

    def __init__(
        self,
        config: TrainConfig,
        encoder: nn.Module,
        text_embedder: TextEmbedder,
        images: Mapping[str, Sequence[np.ndarray]],
        llm: Any = None,
        *,
        decoder: TextAlignedDecoder | None = None,
        prompt_learner: PromptLearner | None = None,
        progress: bool = True,
        bank_cache_dir: Path | str | None = None,
    ) -> None:
        if encoder.image_size_px != config.image_size_px:
            raise ConfigError(f"image_size_px {config.image_size_px} != encoder {encoder.name!r}'s {encoder.image_size_px}")
        if config.answer_loss and llm is None:
            raise ConfigError("answer_loss=True needs an LLM (load_llm()); or train the decoder only (--no-llm)")
        if not images:
            raise ConfigError("no training images: give at least one class with >= 2 normal images")
        self.config, self.encoder, self.text_embedder, self.progress = config, encoder, text_embedder, progress
        self.llm = llm if config.answer_loss else None
        self.encoder.eval().requires_grad_(False)
        if self.llm is not None:
            self.llm.eval().requires_grad_(False)
        size = config.image_size_px
        self.images = {name: [_fit_image(img, size, name, i) for i, img in enumerate(imgs)] for name, imgs in images.items()}
        self.simulators = {name: [AnomalySimulator(imgs, product_class=name, method=method, seed=config.seed)
                                  for method in config.nsa_method.split("+")]
                           for name, imgs in self.images.items()}
        self.anchors = {name: text_anchors(text_embedder, name) for name in self.images}  # F_text (2, C_text)
        self.prompt_maps = None
        if self.llm is not None and config.prompt_map == "few_shot":
            from training.prompt_maps import FewShotPromptMaps

            self.prompt_maps = FewShotPromptMaps(encoder, self.images, shots=config.bank_shots,
                                                 banks_per_class=config.banks_per_class, seed=config.seed,
                                                 cache_dir=bank_cache_dir)
        torch.manual_seed(config.seed)
        self.decoder = decoder or TextAlignedDecoder(encoder.stage_channels, text_embedder.dim, size)
        self.prompt_learner = None
        if self.llm is not None:
            self.prompt_learner = prompt_learner or PromptLearner(self.llm.hidden_size, encoder.global_dim)
        trainable = list(self.decoder.parameters()) + list(self.prompt_learner.parameters() if self.prompt_learner else [])
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr)
        self.step = 0
        self.history: list[list[float]] = []  # per step: step, total, focal, dice, answer
        self._cache: dict[tuple[str, int], tuple[tuple[torch.Tensor, ...], torch.Tensor]] = {}
        self._answer_ids: dict[str, list[int]] = {}
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=max(1, config.log_every))  # decision loss, acc, exact
        self._skipped: deque[float] = deque(maxlen=max(1, config.log_every))  # share of answers skipped (skip_unseen)

    # --- schedule ----------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: ceil(pairs / batch_size)."""
        return math.ceil(sum(len(v) for v in self.images.values()) / self.config.batch_size)

    @property
    def total_steps(self) -> int:
        """Steps this run goes to: all epochs, capped by ``max_steps``."""
        total = self.config.epochs * self.steps_per_epoch
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch`` (deterministic); used by :meth:`fit` and by tests."""
        pairs = _EpochPairs(self.simulators, self.config.seed, epoch)
        size = self.config.batch_size
        return self._collate([pairs[i] for i in range(index * size, min((index + 1) * size, len(pairs)))])

    def _collate(self, pairs: Sequence[tuple[str, int, np.ndarray, np.ndarray, int]]) -> Batch:
        names = tuple(p[0] for p in pairs)
        masks = np.stack([np.zeros_like(p[3]) for p in pairs] + [p[3] for p in pairs])
        with_description = self.config.with_description
        answers = tuple(qa_pair(m, product_class=n, with_description=with_description).answer
                        for m, n in zip(masks, names + names, strict=True))
        return Batch(names + names, tuple((p[0], p[1]) for p in pairs), tuple(p[2] for p in pairs),
                     torch.from_numpy(masks).float(), answers, tuple(p[4] for p in pairs))

    # --- one step ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, images: Sequence[np.ndarray]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        out = self.encoder(self.encoder.preprocess(list(images)))
        return tuple(f.float() for f in out.patch_features), out.global_vector.float()

    def _features(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Stage features [(2P, C_i, H_i, W_i)] and global vectors (2P, C) of the batch's images."""
        if self.config.cache_features:
            normal = [self._cache[key] for key in batch.normal_keys]
            stages = tuple(torch.stack([n[0][i] for n in normal]) for i in range(len(normal[0][0])))
            vectors = torch.stack([n[1] for n in normal])
            anomaly_stages, anomaly_vectors = self._encode(batch.anomalies)
            return (tuple(torch.cat(pair) for pair in zip(stages, anomaly_stages, strict=True)),
                    torch.cat([vectors, anomaly_vectors]))
        normals = [self.images[name][index] for name, index in batch.normal_keys]
        return self._encode(normals + list(batch.anomalies))

    def train_step(self, batch: Batch) -> LossBreakdown:
        """Forward, loss, backward and one Adam step on ``batch``; returns the loss terms."""
        if self.config.cache_features and not self._cache:
            self._build_cache()
        features, vectors = self._features(batch)
        text = torch.stack([self.anchors[name] for name in batch.classes])  # F_text per image (2P, 2, C_text)
        out = self.decoder(features, text)
        logits = labels = None
        total_extra = None
        if self.prompt_learner is not None:
            maps = self._prompt_maps(batch, features, out)
            keep = self._answered(maps, batch.masks)
            if keep:
                rows = torch.tensor(keep)
                logits, labels, first = self._answer_logits(
                    self.prompt_learner(maps[rows], vectors[rows]),
                    [batch.classes[i] for i in keep], [batch.answers[i] for i in keep])
                total_extra = self._decision_term(logits, labels, first)
        losses = anomalygpt_loss(out.stage_maps, batch.masks, logits, labels, self.config.loss_weights,
                                 self.config.focal_gamma)
        total = losses.total if total_extra is None else losses.total + self.config.decision_weight * total_extra
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return losses._replace(total=total)

    def _prompt_maps(self, batch: Batch, features: Sequence[torch.Tensor], out) -> torch.Tensor:
        """M for the prompt learner (2P, S, S): few-shot maps against leave-out banks, or the decoder's."""
        if self.prompt_maps is not None:
            banks = tuple(self.prompt_maps.pick(name, index, draw)
                          for (name, index), draw in zip(batch.normal_keys, batch.draws, strict=True))
            return self.prompt_maps(batch.classes, banks + banks, features)
        return out.anomaly_map if self.config.answer_grad_to_decoder else out.anomaly_map.detach()

    def _answered(self, maps: torch.Tensor, masks: torch.Tensor) -> list[int]:
        """Images whose answer is trained: all, or with ``skip_unseen`` those whose prompt map shows their
        truth (a normal image's map stays at or below the decision level 0.5, an anomaly's map exceeds it
        inside the anomaly's mask). The LLM reads the map: an anomaly the map does not show, or a normal
        image it flags, would only teach it to guess."""
        if not self.config.skip_unseen:
            return list(range(maps.shape[0]))
        keep = []
        for i, (heat, mask) in enumerate(zip(maps, masks, strict=True)):
            region = mask > 0
            shows = float(heat[region].max()) > DECISION_LEVEL if bool(region.any()) else float(heat.max()) <= DECISION_LEVEL
            if shows:
                keep.append(i)
        self._skipped.append(1.0 - len(keep) / maps.shape[0])
        return keep

    def _decision_term(self, logits: torch.Tensor, labels: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """CE of the answers' first tokens (the Yes / No decision); records decision and answer accuracy."""
        flat, targets = logits[0, :-1], labels[0, 1:]  # row j predicts targets[j]
        decision = nn.functional.cross_entropy(flat[first], targets[first])
        with torch.no_grad():
            right = flat.argmax(-1) == targets
            ends = [*first.tolist()[1:], len(targets)]
            exact = [bool(right[a:b].all()) for a, b in zip(first.tolist(), ends, strict=True)]
            self._recent.append((float(decision), float(right[first].float().mean()), float(np.mean(exact))))
        return decision

    def _answer_logits(self, tokens: PromptTokens, classes: Sequence[str], answers: Sequence[str],
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits at the answer tokens only, as (1, N + 1, V) with labels (1, N + 1) for ``answer_loss``,
        and the index among the N answer tokens of each answer's first token (the decision), (B,).

        The full labels (B, T) are -100 except at the answer tokens; only the N positions that predict
        an answer token go through the LM head (the (B, T, V) logits would cost more than they tell).
        """
        llm, rows, answer_ids = self.llm, [], []
        for i, (name, answer) in enumerate(zip(classes, answers, strict=True)):
            description = default_description(name) if self.config.with_description else ""
            prompt = build_llm_input(llm, tokens.image_tokens[i], tokens.prompt_tokens[i], description, QUESTION)
            if answer not in self._answer_ids:  # the answer, then EOS so that generation stops there
                eos = llm.tokenizer.eos_token_id
                self._answer_ids[answer] = llm.token_ids(f" {answer}") + ([eos] if eos is not None else [])
            ids = self._answer_ids[answer]
            rows.append(torch.cat([prompt.inputs_embeds[0], llm.embed_ids(ids)]))  # (T_i, D)
            answer_ids.append((prompt.inputs_embeds.shape[1], ids))
        length = max(r.shape[0] for r in rows)
        embeds = torch.stack([nn.functional.pad(r, (0, 0, 0, length - r.shape[0])) for r in rows])  # (B, T, D)
        attention = torch.zeros(embeds.shape[:2], dtype=torch.long)
        labels = torch.full(embeds.shape[:2], IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for b, (start, ids) in enumerate(answer_ids):
            attention[b, : start + len(ids)] = 1
            labels[b, start : start + len(ids)] = torch.tensor(ids)
        hidden = llm.model.get_decoder()(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        targets = labels[:, 1:]  # position t predicts token t + 1
        picked = hidden[:, :-1][targets != IGNORE_INDEX]  # (N, D)
        logits = llm.model.get_output_embeddings()(picked).float()  # (N, V)
        compact = torch.cat([logits, logits.new_zeros(1, logits.shape[1])]).unsqueeze(0)  # (1, N + 1, V)
        compact_labels = torch.cat([torch.tensor([IGNORE_INDEX]), targets[targets != IGNORE_INDEX]]).unsqueeze(0)
        lengths = torch.tensor([len(ids) for _, ids in answer_ids])
        first = torch.cumsum(lengths, 0) - lengths  # rows are taken in batch order, each answer in order
        return compact, compact_labels, first

    @torch.no_grad()
    def _build_cache(self, chunk: int = 8) -> None:
        from tqdm import tqdm

        keys = [(name, i) for name, imgs in self.images.items() for i in range(len(imgs))]
        for start in tqdm(range(0, len(keys), chunk), desc="caching features", disable=not self.progress, leave=False):
            part = keys[start : start + chunk]
            stages, vectors = self._encode([self.images[n][i] for n, i in part])
            for j, key in enumerate(part):
                self._cache[key] = (tuple(s[j].clone() for s in stages), vectors[j].clone())

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self, out_dir: Path | str, resume: bool = False) -> TrainResult:
        """Train to :attr:`total_steps`, checkpointing into ``out_dir`` after every epoch and at the end.

        ``resume=True`` continues the checkpoint in ``out_dir`` (its step and optimizer state).
        """
        from tqdm import tqdm

        out = Path(out_dir)
        if resume:
            self.restore(out)
        elif (out / CONFIG_FILE).is_file():
            raise CheckpointError(f"{str(out)!r} already holds a checkpoint: resume it or choose another folder")
        started, busy_s, images = time.perf_counter(), 0.0, 0
        if self.config.cache_features and not self._cache:
            self._build_cache()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step", disable=not self.progress)
        every, log_every, first_step = self.config.checkpoint_every, self.config.log_every, self.step
        while self.step < self.total_steps:
            epoch, index = divmod(self.step, self.steps_per_epoch)
            pairs = _EpochPairs(self.simulators, self.config.seed, epoch, start=index * self.config.batch_size)
            loader = torch.utils.data.DataLoader(pairs, batch_size=self.config.batch_size, shuffle=False,
                                                 num_workers=self.config.num_workers, collate_fn=self._collate)
            tick = time.perf_counter()
            for batch in loader:
                losses = self.train_step(batch)
                self.step += 1
                self.history.append([self.step, *(float(t.detach()) for t in losses)])
                busy_s, images = busy_s + time.perf_counter() - tick, images + len(batch.classes)
                bar.update(1)
                bar.set_postfix(loss=f"{float(losses.total.detach()):.3f}", focal=f"{float(losses.focal):.3f}",
                                dice=f"{float(losses.dice):.3f}", answer=f"{float(losses.answer):.3f}",
                                img_s=f"{images / max(busy_s, 1e-9):.1f}")
                if log_every and self.step % log_every == 0:
                    self._log_progress(busy_s / max(1, self.step - first_step))
                if self.step >= self.total_steps:
                    break
                if every and self.step % every == 0:
                    self.save(out)
                    log.info("checkpoint at step %d: %s", self.step, out)
                tick = time.perf_counter()
            self.save(out)
            log.info("epoch %.2f done (step %d): %s", self.step / self.steps_per_epoch, self.step, self.final_losses())
        bar.close()
        if not (out / CONFIG_FILE).is_file():  # nothing left to do on a resume: still leave a checkpoint
            self.save(out)
        return TrainResult(out, out / LOSS_CURVE_FILE, self.step, self.step / self.steps_per_epoch,
                           self.final_losses(), time.perf_counter() - started, images / max(busy_s, 1e-9))

    def _log_progress(self, step_s: float) -> None:
        """One line: mean losses, decision loss/accuracy and exact answers over the last ``log_every`` steps."""
        recent = np.asarray(self.history[-self.config.log_every :], np.float64)[:, 1:].mean(0)
        line = (f"step {self.step}/{self.total_steps} (epoch {self.step / self.steps_per_epoch:.2f}): total {recent[0]:.4f} "
                f"focal {recent[1]:.4f} dice {recent[2]:.4f} answer {recent[3]:.4f}")
        if self._recent:
            decision, accuracy, exact = np.asarray(self._recent, np.float64).mean(0)
            line += f" decision {decision:.4f} decision_acc {100 * accuracy:.1f}% exact_answers {100 * exact:.1f}%"
        if self._skipped:
            line += f" skipped_unseen {100 * float(np.mean(self._skipped)):.1f}%"
        eta_s = step_s * (self.total_steps - self.step)
        log.info("%s; %.2f s/step, ETA %d min", line, step_s, round(eta_s / 60))

    def final_losses(self) -> dict[str, float]:
        """Mean of each loss term over the last epoch's steps (empty before the first step)."""
        recent = self.history[-self.steps_per_epoch :]
        if not recent:
            return {}
        means = np.asarray(recent, np.float64)[:, 1:].mean(0)
        return {name: round(float(v), 5) for name, v in zip(("total", "focal", "dice", "answer"), means, strict=True)}

    # --- checkpoints -------------------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        """config.json content (see training/checkpoint.py)."""
        return {
            "encoder": self.encoder.name,
            "image_size_px": self.config.image_size_px,
            "stage_channels": list(self.encoder.stage_channels),
            "global_dim": int(self.encoder.global_dim),
            "text_embedder": {"name": self.text_embedder.name, "dim": int(self.text_embedder.dim)},
            "llm": None if self.llm is None else {"name": self.llm.name, "hidden_size": int(self.llm.hidden_size)},
            "classes": list(self.images),
            "images_per_class": {name: len(imgs) for name, imgs in self.images.items()},
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "losses": self.final_losses(),
            "seed": self.config.seed,
            "train_config": asdict(self.config),
        }

    def save(self, out_dir: Path | str) -> Path:
        """Write the checkpoint folder and its loss curve PNG; return the folder."""
        history = torch.tensor(self.history, dtype=torch.float64).reshape(-1, 5)
        folder = save_checkpoint(out_dir, decoder=self.decoder, prompt_learner=self.prompt_learner,
                                 optimizer=self.optimizer, step=self.step, config=self.checkpoint_config(),
                                 history=history)
        classes = ", ".join(self.images)
        write_loss_curve(history, folder / LOSS_CURVE_FILE, title=f"training losses ({classes})")
        return folder

    def restore(self, checkpoint_dir: Path | str) -> None:
        """Load weights, optimizer state, step and loss history from a compatible checkpoint folder."""
        checkpoint = load_checkpoint(checkpoint_dir, self.encoder)
        mine, theirs = self.checkpoint_config(), checkpoint.config
        for key in ("encoder", "image_size_px", "text_embedder", "llm", "classes", "images_per_class", "seed"):
            if mine[key] != theirs.get(key):
                raise CheckpointError(f"cannot resume {str(checkpoint_dir)!r}: {key} was {theirs.get(key)!r}, now {mine[key]!r}")
        for key in _RESUME_KEYS:
            old = theirs.get("train_config", {}).get(key, _BEFORE_KEYS.get(key))
            if key not in theirs.get("train_config", {}) and key not in _BEFORE_KEYS:
                continue  # a key added later with no effect on older runs
            if json.dumps(old) != json.dumps(getattr(self.config, key)):  # tuples come back as lists
                raise CheckpointError(f"cannot resume {str(checkpoint_dir)!r}: {key} was {old!r}, now {getattr(self.config, key)!r}")
        load_state_checked(self.decoder, checkpoint.decoder.state_dict(), checkpoint_dir)
        if self.prompt_learner is not None and checkpoint.prompt_learner is not None:
            load_state_checked(self.prompt_learner, checkpoint.prompt_learner.state_dict(), checkpoint_dir)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr  # a resumed run may change the learning rate
        self.step = checkpoint.step
        self.history = checkpoint.history.tolist()


def _fit_image(image: np.ndarray, size_px: int, name: str, index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"class {name!r} image {index}: expected uint8 RGB (H, W, 3)")
    if image.shape[:2] != (size_px, size_px):
        import cv2

        image = cv2.resize(image, (size_px, size_px), interpolation=cv2.INTER_AREA)
    return image
