"""Each installed engine gives the torch fp32 patch features (per-patch cosine), for every encoder family.

fp32 engines: every patch's cosine to torch fp32 >= 0.9999; bf16: >= 0.995. EfficientNet-Lite0 uses
its real packaged ImageNet weights on real photographs; CLIP and DINOv2 use tiny random checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from model.encoders import build_encoder
from model.encoders.base import ImageEncoder
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.engine import (
    CompileError,
    EngineEncoder,
    ExportError,
    UnknownEngineError,
    accelerate,
    available_engines,
    detect_cpu_features,
    export_onnx,
    export_split_onnx,
    probe_pixels,
)
from model.engine.accelerate import MIN_PATCH_COSINE
from tests.unit.model.test_clip import save_tiny_clip
from tests.unit.model.test_dinov2 import save_tiny_dinov2

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIN_COSINE = {"fp32": 0.9999, "bf16": 0.995}


def _backends() -> list[tuple[str, str]]:
    found = available_engines()
    backends = [("onnxruntime", "fp32")] if "onnxruntime" in found else []
    if "openvino" in found:
        backends.append(("openvino", "fp32"))
        if detect_cpu_features().has_bf16:
            backends.append(("openvino", "bf16"))
    return backends


BACKENDS = _backends()
FP32_BACKENDS = [b for b in BACKENDS if b[1] == "fp32"]
backend_params = pytest.mark.parametrize(("engine", "precision"), BACKENDS, ids=[f"{e}-{p}" for e, p in BACKENDS])


def worst_patch_cosine(fast: ImageEncoder, reference: ImageEncoder, pixels: torch.Tensor) -> float:
    """Smallest cosine over every patch of every stage (and the global vectors)."""
    want, got = reference(pixels), fast(pixels)
    pairs = [*zip(want.patch_features, got.patch_features, strict=True), (want.global_vector, got.global_vector)]
    for a, b in pairs:
        assert a.shape == b.shape
        assert b.dtype == torch.float32
    return min(float(F.cosine_similarity(a, b, dim=1).min()) for a, b in pairs)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="module")
def efficientnet() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder(pretrained=True)


@pytest.fixture(scope="module")
def photos(efficientnet) -> torch.Tensor:
    import skimage.data

    images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    return efficientnet.preprocess([np.ascontiguousarray(image[..., :3]) for image in images])  # (3, 3, 224, 224)


@pytest.mark.parametrize(("engine", "precision"), FP32_BACKENDS, ids=[e for e, _ in FP32_BACKENDS])
def test_packaged_efficientnet_matches_torch_fp32(efficientnet, photos, cache_dir, engine, precision):
    fast = accelerate(efficientnet, engine=engine, precision=precision, cache_dir=cache_dir)
    assert isinstance(fast, EngineEncoder)
    assert (fast.engine, fast.precision) == (engine, precision)
    assert worst_patch_cosine(fast, efficientnet, photos) >= MIN_COSINE[precision]
    assert worst_patch_cosine(fast, efficientnet, probe_pixels(efficientnet)) >= MIN_COSINE[precision]


@pytest.mark.skipif(("openvino", "bf16") not in BACKENDS, reason="needs openvino and a CPU with bf16")
def test_auto_uses_bf16_only_where_it_passes_the_accuracy_check(efficientnet, cache_dir):
    bf16 = accelerate(efficientnet, engine="openvino", precision="bf16", cache_dir=cache_dir)  # explicit: kept
    assert bf16.precision == "bf16"
    probes = probe_pixels(efficientnet)
    passes = worst_patch_cosine(bf16, efficientnet, probes) >= MIN_PATCH_COSINE["bf16"]
    auto = accelerate(efficientnet, cache_dir=cache_dir)
    assert auto.engine == "openvino"
    assert auto.precision == ("bf16" if passes else "fp32")
    assert passes or "bf16 failed the accuracy check" in auto.engine_description
    assert worst_patch_cosine(auto, efficientnet, probes) >= MIN_PATCH_COSINE[auto.precision]


@pytest.mark.skipif(("openvino", "bf16") not in BACKENDS, reason="needs openvino and a CPU with bf16")
def test_openvino_bf16_keeps_efficientnets_first_layers_fp32_and_meets_the_bar(efficientnet, photos, cache_dir):
    fast = accelerate(efficientnet, engine="openvino", precision="bf16", cache_dir=cache_dir)
    assert fast.precision == "bf16"
    assert "first layers fp32" in fast.engine_description
    assert fast.model_file.name == "body.onnx"
    for pixels in (photos, probe_pixels(efficientnet)):
        assert worst_patch_cosine(fast, efficientnet, pixels) >= MIN_COSINE["bf16"]
    for batch in (1, 3):  # dynamic batch axis through both graphs
        out = fast(probe_pixels(efficientnet)[:batch])
        assert out.patch_features[0].shape[0] == out.global_vector.shape[0] == batch


@pytest.fixture(scope="module")
def transformer_encoders(tmp_path_factory) -> dict[str, ImageEncoder]:
    """Tiny random CLIP and DINOv2 at 48 px (not the checkpoints' 32: positions are interpolated)."""
    encoders = {}
    for family, save in (("clip", save_tiny_clip), ("dinov2", save_tiny_dinov2)):
        encoders[family] = build_encoder(family, save(tmp_path_factory.mktemp(family)), image_size_px=48)
    return encoders


@backend_params
@pytest.mark.parametrize("family", ["clip", "dinov2"])
def test_transformer_encoders_export_and_match(transformer_encoders, cache_dir, family, engine, precision):
    encoder = transformer_encoders[family]
    fast = accelerate(encoder, engine=engine, precision=precision, cache_dir=cache_dir)
    pixels = encoder.normalize(torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(1)))
    assert worst_patch_cosine(fast, encoder, pixels) >= MIN_COSINE[precision]
    assert fast.stage_blocks == encoder.stage_blocks
    assert fast.text_embedder is getattr(encoder, "text_embedder", None)


@pytest.mark.skipif(not BACKENDS, reason="no ONNX engine installed")
def test_the_engine_encoder_keeps_the_interface(efficientnet, cache_dir):
    engine, precision = BACKENDS[0]
    fast = accelerate(efficientnet, engine=engine, precision=precision, cache_dir=cache_dir, threads=2)
    for attribute in ("name", "image_size_px", "stage_channels", "global_dim", "stage_blocks"):
        assert getattr(fast, attribute) == getattr(efficientnet, attribute)
    assert engine in fast.engine_description
    assert detect_cpu_features().describe() in fast.engine_description
    images = np.random.default_rng(0).integers(0, 256, (2, 100, 100, 3), dtype=np.uint8)
    assert torch.equal(fast.preprocess(images), efficientnet.preprocess(images))
    for batch in (1, 5):  # dynamic batch axis
        out = fast(torch.zeros(batch, 3, 224, 224))
        assert [tuple(f.shape) for f in out.patch_features] == [(batch, c, s, s) for c, s in
                                                                 zip(fast.stage_channels, (28, 14, 14, 7), strict=True)]
        assert tuple(out.global_vector.shape) == (batch, fast.global_dim)
    with pytest.raises(Exception, match=r"\(B, 3, 224, 224\)"):
        fast(torch.zeros(1, 3, 64, 64))
    assert accelerate(fast, engine="torch", cache_dir=cache_dir) is efficientnet  # unwraps to the reference


def test_torch_engine_returns_the_encoder_itself(efficientnet, cache_dir):
    same = accelerate(efficientnet, engine="torch", precision="auto", cache_dir=cache_dir)
    assert same is efficientnet
    assert (same.engine, same.precision) == ("torch", "fp32")
    assert same.engine_description.startswith("torch fp32")


def test_unknown_engine_is_named(efficientnet, cache_dir):
    with pytest.raises(UnknownEngineError, match="'tensorrt'"):
        accelerate(efficientnet, engine="tensorrt", cache_dir=cache_dir)
    with pytest.raises(Exception, match="threads must be an integer >= 1, got 0"):
        accelerate(efficientnet, engine="torch", cache_dir=cache_dir, threads=0)


@pytest.mark.skipif(not BACKENDS, reason="no ONNX engine installed")
def test_auto_falls_back_to_torch_when_export_fails_and_explicit_raises(tmp_path):
    encoder = EfficientNetLiteEncoder(pretrained=False, image_size_px=64, stage_blocks=(1, 2, 3, 4))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fallback = accelerate(encoder, cache_dir=blocker / "cache")
    assert fallback is encoder
    assert fallback.engine == "torch"
    assert "failed" in fallback.engine_description
    assert "a-file" in fallback.engine_description
    with pytest.raises(ExportError, match="a-file"):
        accelerate(encoder, engine=BACKENDS[0][0], precision=BACKENDS[0][1], cache_dir=blocker / "cache")


@backend_params
def test_a_corrupt_cached_file_is_a_compile_error(tmp_path, engine, precision):
    encoder = EfficientNetLiteEncoder(pretrained=False, image_size_px=64, stage_blocks=(1, 2, 3, 4))
    model_file = export_onnx(encoder, tmp_path)
    for path in (model_file, *export_split_onnx(encoder, tmp_path)):
        path.write_bytes(b"not an onnx file")
    with pytest.raises(CompileError, match="model.onnx|head.onnx"):
        accelerate(encoder, engine=engine, precision=precision, cache_dir=tmp_path)
    assert accelerate(encoder, cache_dir=tmp_path).engine == "torch"  # auto tries every engine, then torch
