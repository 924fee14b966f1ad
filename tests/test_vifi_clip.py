"""--feature_type ViFi-CLIP: text features and logit scale from files under --feature_path, as the original."""
import numpy as np
import pytest
import torch

from models.build import build_model
from models.text_encoder import TextEmbeddingError, ViFiTextEncoder, build_text_encoder
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from utils.config import default_config, parse_config


def _vifi_folder(tmp_path, classes=5, dim=16, scale=4.2):
    rng = np.random.default_rng(0)
    np.save(tmp_path / ViFiTextEncoder.TEXT_FILE, rng.standard_normal((classes, dim)).astype(np.float64))
    np.save(tmp_path / ViFiTextEncoder.SCALE_FILE, np.array(scale, dtype=np.float32))
    return tmp_path


def test_text_features_and_scale_come_from_the_feature_folder(tmp_path):
    folder = _vifi_folder(tmp_path)
    cfg = default_config(feature_type="ViFi-CLIP", feature_path=str(folder), device="cpu")
    encoder = build_text_encoder(cfg)
    assert isinstance(encoder, ViFiTextEncoder)
    table = encoder.encode(["a", "b", "c", "d", "e"])
    expected = np.load(folder / ViFiTextEncoder.TEXT_FILE).astype(np.float32)
    assert table.dtype == torch.float32 and np.array_equal(table.numpy(), expected)
    assert encoder.logit_scale == pytest.approx(4.2, abs=1e-6)
    with pytest.raises(TextEmbeddingError, match="holds 5 class text features, but 3 classes"):
        encoder.encode(["a", "b", "c"])


def test_missing_files_are_one_clear_error(tmp_path):
    np.save(tmp_path / ViFiTextEncoder.TEXT_FILE, np.zeros((5, 16)))
    cfg = default_config(feature_type="ViFi-CLIP", feature_path=str(tmp_path), device="cpu")
    with pytest.raises(TextEmbeddingError, match=r"--feature_path .*missing: .*logit_scale\.npy"):
        build_text_encoder(cfg)


def test_model_keeps_the_scale_out_of_the_state_dict(tmp_path):
    flags = {**HEADLINE_MODEL_FLAGS["thumos14"], "hidden_dim": 16, "nheads": 2, "dim_feedforward": 32,
             "num_queries": 4, "dec_layers": 1}
    vifi = build_model(default_config(**flags, feature_type="ViFi-CLIP"))
    clip = build_model(default_config(**flags))
    assert "logit_scale" not in vifi.state_dict() and "logit_scale" in clip.state_dict()
    assert "logit_scale" not in dict(vifi.named_parameters())
    vifi.set_logit_scale(4.2)
    assert vifi.logit_scale.item() == pytest.approx(4.2)
    # a ViFi-CLIP checkpoint of the original has every key but logit_scale: it loads strictly
    vifi.load_state_dict({k: v for k, v in clip.state_dict().items() if k != "logit_scale"}, strict=True)


def test_shipped_config():
    cfg = parse_config(["--cfg_path", "config/Thumos14_ViFi-CLIP_zs_75_8frame.yaml"])
    assert cfg.feature_type == "ViFi-CLIP" and cfg.feature_stride == 8 and cfg.split == 75
    assert cfg.feature_path.endswith("ViFi-CLIP_feature_8frame")
