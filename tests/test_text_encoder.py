"""Text side: CLIP loading from local files, prompts, the embedding cache, NPZ embeddings, clear errors."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import models.clip_loading as clip_loading
from models.text_encoder import (
    PROMPT_TEMPLATE,
    ClipTextEncoder,
    NpzTextEncoder,
    TextEmbeddingError,
    build_prompts,
    build_text_encoder,
    check_embedding_dim,
    parse_class_list,
    read_text_embeddings,
    write_text_embeddings,
)
from models.tiny_clip import TINY_EMBED_DIM, build_tiny_clip, write_tiny_clip_checkpoint
from utils.config import default_config

CLASSES = ["BaseballPitch", "HammerThrow", "PoleVault"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_tiny_clip_checkpoint(tmp_path_factory.mktemp("clip") / "tiny_clip.pt", seed=1)


def _reference_text_features(seed: int, prompts: list[str]) -> torch.Tensor:
    """What the checkpoint must give: the same tiny CLIP with weights rounded to float16 (as saved)."""
    import clip

    model = build_tiny_clip(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
        return model.encode_text(clip.tokenize(prompts)).float()


def _cfg(tiny_ckpt, tmp_path, **overrides):
    values = dict(CLIP_model_name=str(tiny_ckpt), device="cpu", text_cache_dir=str(tmp_path / "cache"))
    values.update(overrides)
    return default_config(**values)


def test_import_clip_in_fresh_interpreter():
    # openai-clip imports pkg_resources (setuptools < 81 pinned in requirements.txt).
    result = subprocess.run([sys.executable, "-c", "import clip; print(len(clip.available_models()))"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 9


def test_state_dict_and_jit_archive_load_the_same_weights(tiny_ckpt, tmp_path):
    jit_path = write_tiny_clip_checkpoint(tmp_path / "tiny_jit.pt", seed=1, jit_archive=True)
    from_state_dict = clip_loading.load_clip(str(tiny_ckpt), "cpu")
    from_archive = clip_loading.load_clip(str(jit_path), "cpu")
    assert from_state_dict.visual.input_resolution == 32
    assert next(from_state_dict.parameters()).dtype == torch.float32  # CPU: float32 like openai-clip
    sd_a, sd_b = from_state_dict.state_dict(), from_archive.state_dict()
    assert sd_a.keys() == sd_b.keys()
    # the archive keeps float32 weights, the state_dict file float16: equal up to float16 rounding
    assert all(torch.allclose(sd_a[k].float(), sd_b[k].float(), atol=1e-3) for k in sd_a)


def test_unknown_model_name_lists_available_models():
    with pytest.raises(clip_loading.ClipModelNotFoundError, match="ViT-B/16"):
        clip_loading.clip_identity("ViT-Z/99")
    with pytest.raises(clip_loading.ClipModelNotFoundError, match="ViT-B/32"):
        ClipTextEncoder("no/such/file.pt", device="cpu", cache_dir=None)


def test_non_checkpoint_file_is_a_clear_error(tmp_path):
    bogus = tmp_path / "not_clip.pt"
    bogus.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not_clip.pt"):
        clip_loading.load_clip(str(bogus), "cpu")
    wrong = tmp_path / "wrong_dict.pt"
    torch.save({"weight": torch.zeros(2)}, wrong)
    with pytest.raises(ValueError, match="missing keys"):
        clip_loading.load_clip(str(wrong), "cpu")


def test_prompts_per_target_type():
    assert build_prompts(["HighJump"], "prompt") == ["a video of a person doing HighJump"]
    assert build_prompts(["High jump"], "name") == ["High jump"]
    v6 = {"HighJump": {"Elaboration": {"Description": ["first", "second"]}}}
    assert build_prompts(["HighJump"], "description", v6) == ["first"]
    v3 = {"HighJump": {"Elaboration": {"Description": "a whole sentence", "Entity": ["x"]}}}
    assert build_prompts(["HighJump"], "description", v3) == ["a whole sentence"]  # quirk 38 fixed
    with pytest.raises(TextEmbeddingError, match=r"desc\.json.*PoleVault"):
        build_prompts(["HighJump", "PoleVault"], "description", v6, "desc.json")
    with pytest.raises(TextEmbeddingError, match="none"):
        build_prompts(["HighJump"], "none")


@pytest.mark.fidelity
def test_release_description_files_give_first_description(release_dir):
    data = release_dir / "data"
    v6 = json.loads((data / "Thumos14" / "Thumos14_description_v6.json").read_text())
    names = sorted(v6)
    prompts = build_prompts(names, "description", v6)
    assert prompts == [v6[name]["Elaboration"]["Description"][0] for name in names]
    v3 = json.loads((data / "ActivityNet13" / "ActivityNet13_description_v3.json").read_text())
    prompts = build_prompts(list(v3)[:5], "description", v3)
    assert all(len(p) > 20 for p in prompts)  # whole strings, not first characters


def test_parse_class_list():
    assert parse_class_list(" high jump, pole vault ,,long jump ") == ["high jump", "pole vault", "long jump"]
    with pytest.raises(TextEmbeddingError, match="more than once"):
        parse_class_list("a, b, a")


def test_clip_encoder_matches_openai_clip_and_caches(tiny_ckpt, tmp_path, monkeypatch):
    loads = []
    real_load = clip_loading.load_clip
    monkeypatch.setattr(clip_loading, "load_clip", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    encoder = build_text_encoder(_cfg(tiny_ckpt, tmp_path))
    first = encoder.encode(CLASSES, {})
    assert first.dtype == torch.float32 and first.shape == (3, TINY_EMBED_DIM)
    expected = _reference_text_features(1, [PROMPT_TEMPLATE.format(c) for c in CLASSES])
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    assert encoder.logit_scale == pytest.approx(float(torch.tensor(math.log(100)).half()))
    assert len(loads) == 1
    cache_file = encoder.cache_path(CLASSES)
    assert cache_file.is_file()

    # a new encoder (new process in real use) hits the disk cache: CLIP is not loaded again
    again = build_text_encoder(_cfg(tiny_ckpt, tmp_path))
    torch.testing.assert_close(again.encode(CLASSES), first, rtol=0, atol=0)
    assert again.logit_scale == encoder.logit_scale
    assert len(loads) == 1

    # a different target type, order or checkpoint is a miss
    by_name = build_text_encoder(_cfg(tiny_ckpt, tmp_path, target_type="name"))
    assert by_name.cache_path(CLASSES) != cache_file
    assert not torch.allclose(by_name.encode(CLASSES), first)
    reordered = again.encode(CLASSES[::-1])
    torch.testing.assert_close(reordered, first.flip(0), rtol=1e-5, atol=1e-5)
    assert len(loads) == 3  # by_name loaded CLIP; `again` loaded it for the new order
    other_ckpt = write_tiny_clip_checkpoint(tmp_path / "other.pt", seed=7)
    other = build_text_encoder(_cfg(other_ckpt, tmp_path))
    assert other.cache_path(CLASSES) != cache_file
    assert not torch.allclose(other.encode(CLASSES), first)
    assert len(list((tmp_path / "cache").glob("text_*.npz"))) == 4


def test_cache_can_be_disabled(tiny_ckpt, tmp_path):
    encoder = build_text_encoder(_cfg(tiny_ckpt, tmp_path, text_cache_dir=""))
    assert encoder.encode(CLASSES[:1]).shape == (1, TINY_EMBED_DIM)
    assert encoder.cache_path(CLASSES[:1]) is None
    assert not (tmp_path / "cache").exists()


def test_description_target_needs_every_class(tiny_ckpt, tmp_path):
    encoder = build_text_encoder(_cfg(tiny_ckpt, tmp_path, target_type="description",
                                      description_file_path="classes_v6.json"))
    descriptions = {c: {"Elaboration": {"Description": [f"someone doing {c}"]}} for c in CLASSES[:2]}
    assert encoder.encode(CLASSES[:2], descriptions).shape == (2, TINY_EMBED_DIM)
    with pytest.raises(TextEmbeddingError, match=r"classes_v6\.json.*PoleVault"):
        encoder.encode(CLASSES, descriptions)


def test_too_long_text_names_the_class(tiny_ckpt, tmp_path):
    encoder = build_text_encoder(_cfg(tiny_ckpt, tmp_path, target_type="name"))
    with pytest.raises(TextEmbeddingError, match="Verbose"):
        encoder.encode(["short", "Verbose " + "word " * 100])


def test_npz_embeddings_bypass_clip(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    path = write_text_embeddings(tmp_path / "emb.npz", CLASSES, vectors, logit_scale=4.5)
    names, stored, scale = read_text_embeddings(path)
    assert names == CLASSES and scale == pytest.approx(4.5)
    np.testing.assert_array_equal(stored, vectors)

    encoder = build_text_encoder(default_config(text_embeddings=str(path), CLIP_model_name="not-a-model"))
    assert isinstance(encoder, NpzTextEncoder)
    rows = encoder.encode(["PoleVault", "BaseballPitch"])
    np.testing.assert_array_equal(rows.numpy(), vectors[[2, 0]])
    assert encoder.logit_scale == pytest.approx(4.5)
    with pytest.raises(TextEmbeddingError, match=r"\['Diving', 'Shotput'\]"):
        encoder.encode(["Diving", "PoleVault", "Shotput"])

    no_scale = write_text_embeddings(tmp_path / "noscale.npz", CLASSES, vectors)
    assert NpzTextEncoder(no_scale).logit_scale == pytest.approx(math.log(100))


def test_npz_errors(tmp_path):
    with pytest.raises(TextEmbeddingError, match="not found"):
        NpzTextEncoder(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", names=np.array(["a"]), vectors=np.zeros((1, 4)))
    with pytest.raises(TextEmbeddingError, match=r"missing array\(s\) \['class_names', 'embeddings'\]"):
        NpzTextEncoder(tmp_path / "bad.npz")
    with pytest.raises(TextEmbeddingError, match="do not match"):
        write_text_embeddings(tmp_path / "x.npz", ["a", "b"], np.zeros((3, 4)))


def test_check_embedding_dim():
    check_embedding_dim(torch.zeros(5, 512), 512, "CLIP ViT-B/16")
    with pytest.raises(TextEmbeddingError, match=r"emb\.npz have dimension 32.*dimension 512"):
        check_embedding_dim(torch.zeros(5, 32), 512, "emb.npz")


def test_encode_text_script(tiny_ckpt, tmp_path):
    from scripts.encode_text import main

    out = tmp_path / "classes.npz"
    assert main(["--classes", "high jump, pole vault", "--CLIP_model_name", str(tiny_ckpt), "--device", "cpu",
                 "--text_cache_dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    names, vectors, scale = read_text_embeddings(out)
    assert names == ["high jump", "pole vault"] and vectors.shape == (2, TINY_EMBED_DIM)
    expected = _reference_text_features(1, [PROMPT_TEMPLATE.format(n) for n in names])
    np.testing.assert_allclose(vectors, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert scale == pytest.approx(math.log(100), abs=1e-3)


def test_encode_text_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from scripts.encode_text import cli

    assert cli(["--classes", "a", "--CLIP_model_name", "ViT-Q/1", "--out", str(tmp_path / "x.npz")]) == 1
    assert capsys.readouterr().err.startswith("error: CLIP model 'ViT-Q/1'")
    assert cli(["--class_file", str(tmp_path / "none.list"), "--out", str(tmp_path / "x.npz")]) == 1
    assert "none.list" in capsys.readouterr().err
