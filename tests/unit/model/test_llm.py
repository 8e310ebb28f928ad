"""model/llm.py: local causal LM folders, embeddings, bounded greedy generation, the SmolLM2 cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.exceptions import ModelError, ShapeError
from model.llm import (
    SMOLLM2_GGUF,
    LanguageModel,
    default_llm_cache_dir,
    load_llm,
    smollm2_package_dir,
)

CORPUS = [
    "### Human: <Img></Img> This is a photo of bottle for anomaly detection. Is there any anomaly in the image?",
    "### Assistant: No, there is no anomaly in the image.",
    "Yes, there is an anomaly in the image, at the top left of the image.",
    "Yes, there are 2 anomalies in the image, they are at the left and bottom right of the image.",
    "Where is it? What is wrong? top right, center, bottom, metal nut, screw, leather",
]


def tiny_tokenizer(add_bos: bool = False, add_eos: bool = False):
    """A byte-level BPE tokenizer trained in memory on a few sentences (~300 tokens); no files needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<eos>", "<bos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    if add_bos or add_eos:
        single = " ".join(["<bos>"] * add_bos + ["$A"] + ["<eos>"] * add_eos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[("<eos>", 0), ("<bos>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<eos>", bos_token="<bos>", pad_token="<pad>"
    )


def tiny_llm(seed: int = 0, add_bos: bool = False) -> LanguageModel:
    """A random 2-layer Llama (hidden 32) with :func:`tiny_tokenizer`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(add_bos=add_bos)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LanguageModel(LlamaForCausalLM(config), tokenizer, name="tiny")


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llm")
    llm = tiny_llm()
    llm.model.save_pretrained(folder)
    llm.tokenizer.save_pretrained(folder)
    return folder


def test_load_llm_from_a_local_folder_is_frozen(llm_folder):
    llm = load_llm(llm_folder)
    assert llm.hidden_size == 32
    assert not any(p.requires_grad for p in llm.parameters())
    assert not llm.model.training


def test_loaded_weights_match_the_saved_ones(llm_folder):
    reference = tiny_llm()
    loaded = load_llm(llm_folder)
    text = "Is there any anomaly in the image?"
    assert torch.equal(loaded.embed_text(text), reference.embed_text(text))


def test_embed_text_rows_are_the_embedding_table_rows(llm_folder):
    llm = load_llm(llm_folder)
    ids = llm.token_ids("### Human: <Img>")
    rows = llm.embed_text("### Human: <Img>")
    assert rows.shape == (len(ids), 32)
    assert torch.equal(rows, llm.model.get_input_embeddings().weight[ids])


def test_generation_is_bounded_greedy_and_cut_at_the_stop_string(llm_folder):
    llm = load_llm(llm_folder)
    prompt = llm.embed_text("### Human: Is there any anomaly in the image?\n### Assistant:").unsqueeze(0)
    for limit in (1, 5, 12):
        assert 1 <= len(llm.generate_ids(prompt, max_new_tokens=limit)) <= limit
        assert "###" not in llm.generate(prompt, max_new_tokens=limit)
    assert llm.generate(prompt, max_new_tokens=12) == llm.generate(prompt, max_new_tokens=12)


def test_generate_rejects_bad_inputs(llm_folder):
    llm = load_llm(llm_folder)
    with pytest.raises(ShapeError, match=r"\(1, T, 32\)"):
        llm.generate(torch.zeros(2, 3, 32))
    with pytest.raises(ModelError, match="max_new_tokens"):
        llm.generate(torch.zeros(1, 3, 32), max_new_tokens=0)


def test_bos_embedding_only_when_the_tokenizer_adds_bos():
    assert tiny_llm().bos_embedding() is None
    with_bos = tiny_llm(add_bos=True)
    assert torch.equal(with_bos.bos_embedding(), with_bos.embed_ids([with_bos.tokenizer.bos_token_id]))


def test_load_llm_names_a_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match=f"{tmp_path}.*config.json"):
        load_llm(tmp_path)


def test_the_packaged_smollm2_gguf_is_found():
    folder = smollm2_package_dir()
    assert (folder / SMOLLM2_GGUF).stat().st_size > 50_000_000


def test_default_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_llm_cache_dir() == tmp_path / "linesight" / "llm" / "smollm2-135m"
