"""Class text embeddings: CLIP text tower (cached on disk) or a precomputed NPZ file.

The text encoder lives outside the detector: its weights are never in the detector's state_dict and never
trained (SPEC §5.4, quirk 3). The original recomputed the embeddings at every forward pass (quirk 18); here
they are computed once per class list and cached on disk. The cached values are those of the original: the
same prompts, the whole class list encoded as one batch, float16 CLIP on CUDA / float32 on CPU, output cast
to float32.

Prompts per `target_type` (SPEC §5.4):
- `prompt`: "a video of a person doing {name}" (names verbatim, e.g. CamelCase THUMOS14 names);
- `description`: the first description of the class in the description file. Fix of quirk 38: where the
  file stores `Description` as one string (the v3 files), the whole string is used, not its first letter;
- `name`: the bare class name.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from models.clip_loading import clip_dtype_tag, clip_identity
from utils.device import resolve_device
from utils.io import atomic_write_bytes, atomic_write_json
from utils.logging import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME).getChild("text_encoder")  # under the run log: console and file

PROMPT_TEMPLATE = "a video of a person doing {}"
TARGET_TYPES = ("prompt", "description", "name")
DEFAULT_LOGIT_SCALE = math.log(100.0)  # CLIP's trained temperature (exp = 100), used when none is known
DEFAULT_CACHE_DIR = "~/.cache/gap_zstal/text"
_CACHE_VERSION = 1


class TextEmbeddingError(ValueError):
    """Bad text-side input: unknown class, missing description, wrong dimension, bad embeddings file."""


# ----------------------------------------------------------------------------------------------- prompts

def build_prompts(class_names: Sequence[str], target_type: str, descriptions: Mapping | None = None,
                  description_file: str | None = None) -> list[str]:
    """The text CLIP encodes for each class (SPEC §5.4)."""
    if target_type == "prompt":
        return [PROMPT_TEMPLATE.format(name) for name in class_names]
    if target_type == "name":
        return list(class_names)
    if target_type == "description":
        source = description_file or "the description file"
        if not descriptions:
            raise TextEmbeddingError(f"target_type description needs class descriptions, but {source} gave none")
        missing = [name for name in class_names if name not in descriptions]
        if missing:
            raise TextEmbeddingError(f"{source} has no description for class(es) {missing} "
                                     "(target_type description)")
        return [_first_description(descriptions[name], name, source) for name in class_names]
    if target_type == "none":
        raise TextEmbeddingError("target_type none uses no class text; use prompt, description or name")
    raise TextEmbeddingError(f"target_type {target_type!r} unknown; expected one of {list(TARGET_TYPES)}")


def _first_description(entry, name: str, source: str) -> str:
    try:
        text = entry["Elaboration"]["Description"]
    except (KeyError, TypeError) as err:
        raise TextEmbeddingError(f"{source}: class {name!r} has no ['Elaboration']['Description'] entry") from err
    if isinstance(text, str):  # v3 layout: one string (quirk 38, fixed: the whole string, not text[0])
        result = text
    elif isinstance(text, (list, tuple)) and text and isinstance(text[0], str):
        result = text[0]
    else:
        raise TextEmbeddingError(f"{source}: class {name!r} has an empty or malformed Description")
    if not result.strip():
        raise TextEmbeddingError(f"{source}: class {name!r} has an empty Description")
    return result


def parse_class_list(text: str) -> list[str]:
    """Classes from a comma-separated string ("high jump, pole vault"); blanks dropped, duplicates refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise TextEmbeddingError(f"no class names in {text!r} (expected a comma-separated list)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TextEmbeddingError(f"class names given more than once: {duplicates}")
    return names


# ----------------------------------------------------------------------------------------------- NPZ files

def write_text_embeddings(path: str | os.PathLike, class_names: Sequence[str], embeddings,
                          logit_scale: float | None = None, prompts: Sequence[str] | None = None) -> Path:
    """Write an embeddings NPZ for `--text_embeddings` (atomically): `class_names` [N] str,
    `embeddings` [N,D] float32, optional scalar `logit_scale` (raw, log-space) and `prompts` [N] str."""
    embeddings = np.asarray(embeddings.detach().cpu() if torch.is_tensor(embeddings) else embeddings,
                            dtype=np.float32)
    names = [str(name) for name in class_names]
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise TextEmbeddingError(f"embeddings of shape {embeddings.shape} do not match {len(names)} class names")
    if len(set(names)) != len(names):
        raise TextEmbeddingError(f"duplicate class names in {names}")
    arrays = {"class_names": np.array(names, dtype=str), "embeddings": embeddings}
    if logit_scale is not None:
        arrays["logit_scale"] = np.asarray(float(logit_scale), dtype=np.float32)
    if prompts is not None:
        arrays["prompts"] = np.array([str(p) for p in prompts], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def read_text_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, float | None]:
    """`(class_names, embeddings [N,D] float32, logit_scale or None)` of an embeddings NPZ."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TextEmbeddingError(f"--text_embeddings {path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("class_names", "embeddings") if key not in data.files]
            if missing:
                raise TextEmbeddingError(f"{path}: missing array(s) {missing}; expected class_names [N] (str), "
                                         "embeddings [N,D] (float) and optionally logit_scale (scalar)")
            names = [str(name) for name in data["class_names"].tolist()]
            embeddings = np.asarray(data["embeddings"], dtype=np.float32)
            scale = float(data["logit_scale"]) if "logit_scale" in data.files else None
    except TextEmbeddingError:
        raise
    except Exception as err:  # noqa: BLE001 - not an npz, pickled object arrays, ...
        raise TextEmbeddingError(f"{path}: cannot read as an embeddings NPZ ({type(err).__name__}: {err})") from err
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise TextEmbeddingError(f"{path}: embeddings of shape {embeddings.shape} for {len(names)} class names")
    if len(set(names)) != len(names):
        raise TextEmbeddingError(f"{path}: duplicate class names")
    if not np.isfinite(embeddings).all():
        raise TextEmbeddingError(f"{path}: embeddings contain NaN or infinite values")
    return names, embeddings, scale


def check_embedding_dim(embeddings, feature_dim: int, source: str) -> None:
    """Text embeddings are compared with visual features by cosine similarity: their widths must agree."""
    dim = int(embeddings.shape[-1])
    if dim != int(feature_dim):
        raise TextEmbeddingError(
            f"text embeddings from {source} have dimension {dim}, but the video features have dimension "
            f"{feature_dim}: use the CLIP model that extracted the features (ViT-B/16 gives 512) or an "
            "embeddings file of matching width")


# ----------------------------------------------------------------------------------------------- encoders

class NpzTextEncoder:
    """Embeddings looked up by class name in a `--text_embeddings` NPZ (CLIP is never loaded)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        names, embeddings, scale = read_text_embeddings(self.path)
        self._rows = {name: i for i, name in enumerate(names)}
        self._embeddings = torch.from_numpy(embeddings)
        if scale is None:
            logger.info("%s has no logit_scale: using ln(100) = %.4f (CLIP's value)", self.path,
                        DEFAULT_LOGIT_SCALE)
            scale = DEFAULT_LOGIT_SCALE
        self.logit_scale = float(scale)
        self.source = str(self.path)

    @property
    def dim(self) -> int:
        return int(self._embeddings.shape[1])

    def encode(self, class_names: Sequence[str], descriptions: Mapping | None = None) -> torch.Tensor:
        """Rows for `class_names` in that order, float32 [N,D] on CPU (`descriptions` is not used)."""
        missing = [name for name in class_names if name not in self._rows]
        if missing:
            raise TextEmbeddingError(f"{self.path} has no embedding for class(es) {missing}; "
                                     f"it holds {sorted(self._rows)}")
        index = torch.tensor([self._rows[name] for name in class_names], dtype=torch.long)
        return self._embeddings.index_select(0, index).clone()


class ViFiTextEncoder:
    """`--feature_type ViFi-CLIP`, as the original: CLIP is never loaded; the class text features are the rows
    of `<feature_path>/text_features_split75_splitID1.npy` and the (raw, log-space) similarity scale is
    `<feature_path>/logit_scale.npy`. The original hard-codes those file names whatever `--split` and
    `--split_id` are (SPEC §12 quirk 39), and uses the rows in the file's order for the class list it is
    given; here the row count must equal the number of classes (else one clear error)."""

    TEXT_FILE = "text_features_split75_splitID1.npy"
    SCALE_FILE = "logit_scale.npy"

    def __init__(self, feature_path: str | os.PathLike):
        folder = Path(feature_path).expanduser()
        paths = [folder / self.TEXT_FILE, folder / self.SCALE_FILE]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise TextEmbeddingError(f"--feature_type ViFi-CLIP reads the class text features and the logit "
                                     f"scale from --feature_path ({folder}); missing: {', '.join(missing)}")
        try:
            table = np.load(paths[0], allow_pickle=False)
            scale = np.load(paths[1], allow_pickle=False)
        except (OSError, ValueError) as err:
            raise TextEmbeddingError(f"--feature_type ViFi-CLIP: cannot read {paths[0]} / {paths[1]} ({err})") from err
        if table.ndim != 2 or not np.isfinite(table).all():
            raise TextEmbeddingError(f"{paths[0]}: expected a finite [classes, dim] array, got shape {table.shape}")
        if np.size(scale) != 1 or not np.isfinite(scale).all():
            raise TextEmbeddingError(f"{paths[1]}: expected one finite number, got shape {np.shape(scale)}")
        self._table = torch.from_numpy(np.asarray(table, dtype=np.float32))  # the original's .float()
        self.logit_scale = float(np.asarray(scale, dtype=np.float32).reshape(()))
        self.source = str(paths[0])

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def encode(self, class_names: Sequence[str], descriptions: Mapping | None = None) -> torch.Tensor:
        """The file's rows, float32 [N,D] (one per class, in the file's order; names are not looked up)."""
        if len(class_names) != self._table.shape[0]:
            raise TextEmbeddingError(f"{self.source} holds {self._table.shape[0]} class text features, but "
                                     f"{len(class_names)} classes are evaluated ({list(class_names)})")
        return self._table.clone()


class ClipTextEncoder:
    """CLIP text tower with a per-class-list disk cache; CLIP is loaded only on a cache miss."""

    def __init__(self, model_name: str = "ViT-B/16", target_type: str = "prompt", device: str | None = "cpu",
                 cache_dir: str | None = DEFAULT_CACHE_DIR, description_file: str | None = None,
                 download_root: str | None = None):
        if target_type not in (*TARGET_TYPES, "none"):  # "none": only logit_scale is used; encode() refuses
            raise TextEmbeddingError(f"target_type {target_type!r} unknown; expected one of {list(TARGET_TYPES)}")
        self.model_name = model_name
        self.target_type = target_type
        self.device = resolve_device(device)
        self.identity = clip_identity(model_name)  # raises a clear error for unknown names / missing files
        self.dtype_tag = clip_dtype_tag(self.device)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.description_file = description_file
        self.download_root = download_root
        self.source = f"CLIP {model_name}"
        self._model = None
        self._memory: dict[str, torch.Tensor] = {}
        self._logit_scale: float | None = None

    # -- cache keys and files
    def _key(self, prompts: Sequence[str]) -> str:
        payload = json.dumps({"v": _CACHE_VERSION, "model": self.identity, "dtype": self.dtype_tag,
                              "target_type": self.target_type, "prompts": list(prompts)}, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:40]

    def _scale_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(self.identity.encode("utf-8")).hexdigest()[:40]
        return self.cache_dir / f"logit_scale_{digest}.json"

    def _cache_file(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"text_{key}.npz"

    def cache_path(self, class_names: Sequence[str], descriptions: Mapping | None = None) -> Path | None:
        """Cache file that holds (or will hold) the embeddings of this class list; None without a cache."""
        if self.cache_dir is None:
            return None
        prompts = build_prompts(class_names, self.target_type, descriptions, self.description_file)
        return self._cache_file(self._key(prompts))

    # -- CLIP
    def _clip(self):
        if self._model is None:
            from models.clip_loading import clip_logit_scale, load_clip

            logger.info("loading CLIP %s on %s (%s) for text embeddings", self.model_name, self.device,
                        self.dtype_tag)
            # Building CLIP draws random initial weights (then overwritten by the checkpoint): under a forked
            # RNG, so that a seeded run's detector initialisation does not depend on whether the text
            # embeddings came from the cache (CLIP not built) or not.
            cuda = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                self._model = load_clip(self.model_name, self.device, self.download_root)
            self._logit_scale = clip_logit_scale(self._model)
            scale_file = self._scale_file()
            if scale_file is not None:
                atomic_write_json(scale_file, {"model": self.identity, "logit_scale": self._logit_scale})
        return self._model

    def release(self) -> None:
        """Drop the CLIP model (the cached embeddings stay available)."""
        self._model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def logit_scale(self) -> float:
        """CLIP's raw logit scale (log-space), read from the cache when CLIP has not been loaded."""
        if self._logit_scale is None:
            scale_file = self._scale_file()
            if scale_file is not None and scale_file.is_file():
                try:
                    self._logit_scale = float(json.loads(scale_file.read_text())["logit_scale"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("ignoring unreadable cache file %s", scale_file)
            if self._logit_scale is None:
                self._clip()
        return self._logit_scale

    @torch.no_grad()
    def _compute(self, prompts: list[str], class_names: Sequence[str]) -> torch.Tensor:
        import clip

        model = self._clip()
        try:
            tokens = clip.tokenize(prompts, context_length=model.context_length)
        except RuntimeError as err:
            lengths = [len(clip.clip._tokenizer.encode(p)) + 2 for p in prompts]
            too_long = [(name, n) for name, n in zip(class_names, lengths) if n > model.context_length]
            raise TextEmbeddingError(f"class text too long for CLIP's context of {model.context_length} "
                                     f"tokens (class, tokens): {too_long}") from err
        return model.encode_text(tokens.to(self.device)).float().cpu()

    def encode(self, class_names: Sequence[str], descriptions: Mapping | None = None) -> torch.Tensor:
        """Float32 embeddings [N,D] on CPU, one row per class in the given order."""
        class_names = list(class_names)
        if not class_names:
            raise TextEmbeddingError("encode() needs at least one class name")
        prompts = build_prompts(class_names, self.target_type, descriptions, self.description_file)
        key = self._key(prompts)
        if key in self._memory:
            return self._memory[key].clone()
        path = self._cache_file(key)
        embeddings = self._read_cache(path, class_names, prompts) if path else None
        if embeddings is None:
            embeddings = self._compute(prompts, class_names)
            if path is not None:
                write_text_embeddings(path, class_names, embeddings, self._logit_scale, prompts)
                logger.info("cached text embeddings of %d classes in %s", len(class_names), path)
        self._memory[key] = embeddings
        return embeddings.clone()

    def _read_cache(self, path: Path, class_names: list[str], prompts: list[str]) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            names, embeddings, scale = read_text_embeddings(path)
            with np.load(path, allow_pickle=False) as data:
                stored_prompts = data["prompts"].tolist() if "prompts" in data.files else None
        except (TextEmbeddingError, OSError, ValueError) as err:
            logger.warning("ignoring unreadable cache file %s (%s)", path, err)
            return None
        if names != class_names or stored_prompts != prompts:  # a hash collision or a hand-edited file
            logger.warning("cache file %s does not match the requested classes; recomputing", path)
            return None
        if scale is not None and self._logit_scale is None:
            self._logit_scale = scale
        return torch.from_numpy(embeddings)


def build_text_encoder(cfg) -> ClipTextEncoder | NpzTextEncoder | ViFiTextEncoder:
    """Text encoder for `cfg`: the `--text_embeddings` NPZ when given, else the ViFi-CLIP files of
    `--feature_path` with `--feature_type ViFi-CLIP`, else CLIP `--CLIP_model_name`."""
    if getattr(cfg, "feature_type", "CLIP") == "ViFi-CLIP" and not getattr(cfg, "text_embeddings", None):
        return ViFiTextEncoder(cfg.feature_path)
    if getattr(cfg, "text_embeddings", None):
        encoder = NpzTextEncoder(cfg.text_embeddings)
        if getattr(cfg, "target_type", "prompt") != "prompt":
            logger.info("--text_embeddings given: --target_type %s is not used (the file's vectors are)",
                        cfg.target_type)
        return encoder
    return ClipTextEncoder(
        model_name=cfg.CLIP_model_name,
        target_type=cfg.target_type,
        device=getattr(cfg, "device", None) or "cpu",
        cache_dir=getattr(cfg, "text_cache_dir", DEFAULT_CACHE_DIR),
        description_file=getattr(cfg, "description_file_path", None),
        download_root=getattr(cfg, "clip_download_root", None),
    )
