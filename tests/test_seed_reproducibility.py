"""A seeded run's initial detector weights do not depend on whether the text-embedding cache was warm."""
import torch

from models.build import build_model
from models.text_encoder import ClipTextEncoder
from models.tiny_clip import TINY_EMBED_DIM, write_tiny_clip_checkpoint
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from utils.config import default_config
from utils.engine.run import seed_everything


def _initial_state(checkpoint, cache_dir, seed=7):
    """What main.py does up to the model: seed, text embeddings (through the cache), build the detector."""
    seed_everything(seed)
    encoder = ClipTextEncoder(str(checkpoint), "prompt", "cpu", cache_dir=str(cache_dir))
    encoder.encode(["BaseballPitch", "HighJump"])
    cfg = default_config(**{**HEADLINE_MODEL_FLAGS["thumos14"], "hidden_dim": TINY_EMBED_DIM, "nheads": 2,
                            "dim_feedforward": 32, "num_queries": 5, "dec_layers": 2})
    model = build_model(cfg)
    model.set_logit_scale(encoder.logit_scale)
    return encoder._model is not None, {k: v.clone() for k, v in model.state_dict().items()}


def test_cold_and_warm_text_cache_give_the_same_initial_weights(tmp_path):
    checkpoint = write_tiny_clip_checkpoint(tmp_path / "tiny_clip.pt")
    cache = tmp_path / "cache"
    loaded_cold, cold = _initial_state(checkpoint, cache)
    loaded_warm, warm = _initial_state(checkpoint, cache)
    assert loaded_cold and not loaded_warm  # the first run built CLIP, the second read the cache
    assert cold.keys() == warm.keys()
    for key in cold:
        assert torch.equal(cold[key], warm[key]), key
    # and the seed still matters (the comparison above is not vacuous)
    _, other = _initial_state(checkpoint, cache, seed=8)
    assert not torch.equal(other["query_embed.weight"], cold["query_embed.weight"])
