"""Load OpenAI CLIP (openai-clip package) from a model name or a local checkpoint file.

One loader serves the text side (models/text_encoder.py) and feature extraction (scripts/extract_features.py):
a model name is downloaded by openai-clip's own downloader (SHA-256 checked) into `~/.cache/clip` (or
`download_root`), and every file, downloaded or local, then goes through the same steps as
`clip.load(..., jit=False)`: read the weights, `clip.model.build_model` infers the architecture from the
state_dict and converts Linear/Conv/attention/projection weights to float16; on CPU the model is cast back
to float32. So on CUDA the towers run in float16 exactly like the original code (SPEC §5.4, quirk 3).

Why not call `clip.load` directly for files: it first tries `torch.jit.load` on the open file and, when that
fails (a plain `torch.save`d state_dict), calls `torch.load` on the same handle without rewinding it, which
fails on current PyTorch. We look inside the zip to pick the right reader instead. Accepted files: a
TorchScript archive as OpenAI publishes them, or a `torch.save`d state_dict (optionally wrapped as
`{"state_dict": ...}`).
"""
from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path

import torch

from utils.device import resolve_device

with warnings.catch_warnings():
    # openai-clip imports pkg_resources, which warns about its own deprecation on import.
    warnings.simplefilter("ignore", UserWarning)
    import clip
    from clip.model import build_model

DEFAULT_DOWNLOAD_ROOT = "~/.cache/clip"
# CLIP's image normalisation (the constants of openai-clip's preprocess transform).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_REQUIRED_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight")


class ClipModelNotFoundError(ValueError):
    """Raised for a CLIP model name that openai-clip does not know and that is not an existing file."""


def available_clip_models() -> list[str]:
    return list(clip.available_models())


def clip_dtype_tag(device: torch.device) -> str:
    """The precision openai-clip runs in on this device (part of every cache key)."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def _is_model_name(name_or_path: str) -> bool:
    return name_or_path in available_clip_models()


def _not_found_message(name_or_path: str) -> str:
    return (f"CLIP model {name_or_path!r} is neither an openai-clip model name nor an existing file; "
            f"available names: {', '.join(available_clip_models())} (or pass the path to a CLIP checkpoint)")


def clip_identity(name_or_path: str) -> str:
    """A string that changes whenever the weights may change, computed without loading them.

    Names are pinned by the SHA-256 in openai-clip's download URL; files are identified by their absolute
    path, size and modification time.
    """
    if _is_model_name(name_or_path):
        return f"openai-clip:{name_or_path}"
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ClipModelNotFoundError(_not_found_message(name_or_path))
    stat = path.stat()
    return f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class ClipDownloadError(ValueError):
    """The weights of a CLIP model name are not on disk and could not be downloaded (e.g. no internet)."""


def _download_failed_message(name: str, url: str, root: str, err: BaseException) -> str:
    target = Path(root) / os.path.basename(url)
    reason = getattr(err, "reason", None) or err
    return (f"CLIP {name}: {target} is missing and downloading it from {url} failed ({type(err).__name__}: "
            f"{reason}); offline, pass a local checkpoint with --CLIP_model_name /path/{target.name} (or place the "
            f"file at {target}) or pre-computed --text_embeddings FILE.npz")


def resolve_clip_file(name_or_path: str, download_root: str | None = None) -> Path:
    """Path of the weights file; a model name is downloaded on first use (needs network).

    A failed download (no network, proxy, interrupted transfer) is a `ClipDownloadError` whose one-line
    message names the file looked for and the offline alternatives, instead of urllib's traceback.
    """
    if _is_model_name(name_or_path):
        root = os.path.expanduser(download_root or DEFAULT_DOWNLOAD_ROOT)
        url = clip.clip._MODELS[name_or_path]
        # openai-clip's downloader: skips the download when a file with the right SHA-256 is present.
        try:
            return Path(clip.clip._download(url, root))
        except (OSError, RuntimeError) as err:  # URLError/HTTPError/timeouts are OSErrors; RuntimeError: SHA-256
            raise ClipDownloadError(_download_failed_message(name_or_path, url, root, err)) from None
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ClipModelNotFoundError(_not_found_message(name_or_path))
    return path


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a `constants.pkl` / `code/` entry; torch.save files are not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights of a CLIP checkpoint file (TorchScript archive or torch.save'd state_dict), on CPU."""
    path = Path(path)
    try:
        if _is_torchscript_archive(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state_dict = torch.load(path, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ValueError(f"{path} is neither a TorchScript CLIP archive nor a torch.save'd CLIP "
                         f"state_dict ({type(err).__name__}: {err})") from err
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, expected a CLIP state_dict")
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if not ("visual.proj" in state_dict or "visual.attnpool.positional_embedding" in state_dict):
        missing.append("visual.proj (ViT) or visual.attnpool.positional_embedding (ResNet)")
    if missing:
        raise ValueError(f"{path} is not a CLIP checkpoint: missing keys {missing}")
    return dict(state_dict)


def load_clip(name_or_path: str, device: str | torch.device = "cpu", download_root: str | None = None):
    """CLIP model in eval mode: float16 weights on CUDA (as openai-clip), float32 on CPU (also where CUDA was
    asked for but is missing: the features then differ slightly from the float16 GPU numbers)."""
    device = resolve_device(device)
    path = resolve_clip_file(name_or_path, download_root)
    state_dict = read_clip_state_dict(path)
    try:
        model = build_model(state_dict)
    except Exception as err:  # noqa: BLE001 - shape/key mismatches inside openai-clip
        raise ValueError(f"could not build a CLIP model from {path}: {type(err).__name__}: {err}") from err
    model = model.to(device)
    if device.type == "cpu":
        model.float()
    return model.eval()


def clip_logit_scale(model) -> float:
    """CLIP's raw (log-space) temperature, e.g. ln(100) = 4.605."""
    value = float(model.logit_scale.detach().float().cpu())
    if not math.isfinite(value):
        raise ValueError(f"CLIP logit_scale is not finite ({value})")
    return value


def clip_input_resolution(model) -> int:
    return int(model.visual.input_resolution)


def preprocess_frames(frames: torch.Tensor, n_px: int) -> torch.Tensor:
    """CLIP's image preprocessing on a batch of uint8 RGB frames `[N,H,W,3]` (any device) -> float `[N,3,n,n]`.

    Same steps as openai-clip's PIL transform: resize the shorter side to `n_px` (bicubic, antialiased,
    rounded back to uint8 like PIL), centre crop, scale to [0,1], normalise with CLIP's mean/std. Running it
    on tensors lets a whole batch be resized on the GPU; values agree with the PIL path up to resampling
    rounding (checked in tests/test_extract_features.py).
    """
    # Imported here: torchvision is only needed for image preprocessing.
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [N,H,W,3], got {tuple(frames.shape)} {frames.dtype}")
    x = frames.permute(0, 3, 1, 2)
    x = TF.resize(x, n_px, interpolation=InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [n_px, n_px])
    x = x.float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
