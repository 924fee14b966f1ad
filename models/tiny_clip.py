"""Tiny randomly initialised CLIP checkpoints and generated videos (no network, no real weights).

Used by the tests and by scripts/make_offline_demo.py (the offline path through training and localize.py).

openai-clip's `build_model` infers the architecture from a state_dict (heads = width // 64, so widths are 64),
so a tiny CLIP saved to a file goes through exactly the loader used for real checkpoints. Its features are
random projections: they exercise every step, they do not recognise anything. The vocabulary must
stay at 49,408 because the real BPE tokenizer produces ids up to that size.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from models.clip_loading import clip  # noqa: F401 - imports openai-clip with its deprecation warning silenced

TINY_EMBED_DIM = 32
TINY_RESOLUTION = 32


def build_tiny_clip(seed: int = 0, embed_dim: int = TINY_EMBED_DIM, logit_scale: float = math.log(100.0)):
    """A one-layer ViT CLIP (32x32 input, patch 16, widths 64), eval mode, float32."""
    from clip.model import CLIP

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CLIP(embed_dim=embed_dim, image_resolution=TINY_RESOLUTION, vision_layers=1, vision_width=64,
                     vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=64,
                     transformer_heads=1, transformer_layers=1)
        # CLIP leaves the vision tower's projections at their (random) construction values: random features.
        with torch.no_grad():
            model.logit_scale.fill_(logit_scale)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def write_tiny_clip_checkpoint(path: str | Path, seed: int = 0, embed_dim: int = TINY_EMBED_DIM,
                               jit_archive: bool = False) -> Path:
    """Save a tiny CLIP as a float16 state_dict (`torch.save`), or as a TorchScript archive like the files
    OpenAI publishes (`jit_archive=True`)."""
    path = Path(path)
    model = build_tiny_clip(seed, embed_dim)
    if jit_archive:
        import clip as clip_pkg

        example = (torch.zeros(1, 3, TINY_RESOLUTION, TINY_RESOLUTION), clip_pkg.tokenize(["a"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about attention-mask checks
            torch.jit.trace(model, example, check_trace=False).save(str(path))
    else:
        state_dict = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save(state_dict, path)
    return path


def write_synthetic_video(path: str | Path, num_frames: int, fps: int = 25, width: int = 64, height: int = 48,
                          codec: str = "mpeg4", seed: int = 0) -> Path:
    """A short video written with PyAV: every frame a different flat colour plus a moving bar, so that
    per-frame CLIP features differ from frame to frame."""
    import av

    path = Path(path)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(num_frames, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            image = np.empty((height, width, 3), dtype=np.uint8)
            image[:] = colours[i]
            x = (i * 3) % (width - 8)
            image[:, x:x + 8] = 255 - colours[i]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
