"""An embedded zero-shot dataset, written from a seed in exactly the release's on-disk format.

`Thumos14Dataset` reads it unchanged (`--dataset_name Synthetic`), so the whole pipeline runs on a fresh
machine without downloads. Layout under `root` (default ``./data/Synthetic``)::

    Synthetic_annotations.json       {"classes", "database": {vid: {subset val|test, annotations, fps, duration}}}
    CLIP/Synthetic_info_8frame.json  {vid: {frame_length, snippet_length, frame_duration, video_fps,
                                            snippet_duration}}
    Synthetic_description_v6.json    {class: {"idx", "Elaboration": {"Description": [...]}, "Origin_Chat"}}
    splits/train_{75_test_25,50_test_50}/THUMOS14/{train,test}/split_{0..9}.list
    features/<vid>.npy               float32 [snippet_length, feature_dim]
    text_embeddings.npz              class_names, embeddings [N, D], logit_scale (= ln 100): --text_embeddings
    synthetic_meta.json              generator parameters (written last; marks a complete dataset)

How the features make zero-shot localisation learnable but not trivial (per snippet, D channels):
- every class has a unit text embedding `t_c` (seeded random stand-in, or CLIP's embedding of the prompt
  "a video of a person doing <Class>" when a CLIP model is given);
- inside an action of class c: visual evidence `e_c = normalise(a*t_c + b*R t_c + n_c)` (R a fixed random
  rotation, n_c a fixed class-specific direction: related to the text, not equal to it; cos(e_c, t_c) ~ 0.55),
  with per-instance amplitude and a soft ramp at the boundaries, plus a class-agnostic "motion" direction
  `m` that marks whole actions (what a proposal generator can learn on seen classes and transfer);
- everywhere: a slow background drift, per-snippet noise, a slow "camera motion" along `m`, and distractor
  bursts carrying either weaker evidence of some class without motion or motion without class evidence, so
  that neither cue alone delimits actions (a linear per-snippet probe separates actions from background with
  an AUC of about 0.9, GT-pooled unseen-class features are classified right about 95% of the time or more).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.io import current_umask

GENERATOR_VERSION = 1
DEFAULT_ROOT = "./data/Synthetic"
FPS = 30.0
STRIDE = 8

# Readable class names with three short steps each (the v6 description layout).
CLASS_STEPS = {
    "Archery": ["Draws the bow", "Aims at the target", "Releases the arrow"],
    "BreakDancing": ["Drops to the floor", "Spins on the back", "Freezes in a pose"],
    "DogWalking": ["Holds the leash", "Walks beside the dog", "Stops at a corner"],
    "Fencing": ["Takes the guard", "Lunges forward", "Parries the blade"],
    "Hurdling": ["Sprints to the hurdle", "Clears the hurdle", "Lands and runs on"],
    "IceSkating": ["Glides on the ice", "Turns on one blade", "Stops with a spray"],
    "Juggling": ["Throws the balls up", "Catches each ball", "Keeps a steady rhythm"],
    "Kayaking": ["Sits in the kayak", "Paddles left and right", "Steers through water"],
    "KiteFlying": ["Holds the string", "Runs against the wind", "Lets the kite rise"],
    "Knitting": ["Holds two needles", "Loops the yarn", "Pulls the stitch through"],
    "LawnMowing": ["Starts the mower", "Pushes it along rows", "Empties the grass bag"],
    "PlayingDrums": ["Holds the sticks", "Strikes the drums", "Hits the cymbal"],
    "PushUps": ["Lies face down", "Pushes the body up", "Lowers the chest"],
    "RopeClimbing": ["Grips the rope", "Pulls upward hand over hand", "Climbs down"],
    "Rowing": ["Grips the oars", "Pulls them back", "Slides forward again"],
    "Skateboarding": ["Pushes off the ground", "Rolls on the board", "Jumps an obstacle"],
    "Surfing": ["Paddles out", "Stands on the board", "Rides the wave"],
    "TableTennis": ["Serves the ball", "Returns with a paddle", "Smashes the ball"],
    "TreePlanting": ["Digs a hole", "Places the sapling", "Fills in the soil"],
    "WallPainting": ["Dips the roller", "Rolls paint on the wall", "Steps back to look"],
    "Weaving": ["Sets the loom", "Passes the shuttle", "Beats the weft tight"],
    "WindowCleaning": ["Sprays the glass", "Wipes with a squeegee", "Dries the edges"],
}
CLASS_NAMES = sorted(CLASS_STEPS)


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters; the defaults train a few epochs of the demo model in about a minute on 2 cores."""

    seed: int = 0
    num_classes: int = 20
    num_train_videos: int = 60
    num_test_videos: int = 40
    min_length: int = 150          # snippets per video (8 frames each at 30 fps: 40 s .. 133 s)
    max_length: int = 500
    feature_dim: int = 128
    clip_model_name: str | None = None   # CLIP name/checkpoint for the class embeddings (forces D = CLIP's width)
    version: int = GENERATOR_VERSION

    def check(self) -> None:
        if not 4 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [4, {len(CLASS_NAMES)}], got {self.num_classes}")
        if self.num_train_videos < 1 or self.num_test_videos < 1:
            raise ValueError("num_train_videos and num_test_videos must be >= 1")
        if not 40 <= self.min_length <= self.max_length:
            raise ValueError(f"need 40 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
        if self.feature_dim < 8:
            raise ValueError(f"feature_dim must be >= 8, got {self.feature_dim}")


# ------------------------------------------------------------------------------------------------ vectors

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


@dataclass(frozen=True)
class ClassText:
    """The text side the caller hands in (the data never loads CLIP): the prompt template and logit scale
    written to text_embeddings.npz, and, with `clip_model_name`, CLIP's embeddings ``[N, D]`` of the prompts
    of the first N classes of `CLASS_NAMES` (utils/engine/synthetic.py computes them)."""

    prompt_template: str
    logit_scale: float
    embeddings: np.ndarray | None = None


def class_text_embeddings(cfg: SyntheticConfig, classes: list[str], text: ClassText) -> tuple[np.ndarray, float]:
    """Unit text embeddings ``[N, D]`` and the raw logit scale: CLIP's when a model is given, else seeded."""
    if cfg.clip_model_name:
        if text.embeddings is None or len(text.embeddings) != len(classes):
            raise ValueError(f"clip_model_name {cfg.clip_model_name}: the CLIP embeddings of the {len(classes)} "
                             "classes must be handed in (utils.engine.synthetic.ensure_synthetic_dataset does)")
        return _unit(np.asarray(text.embeddings, np.float64)), float(text.logit_scale)
    rng = np.random.default_rng([cfg.seed, 1])
    return _unit(rng.standard_normal((len(classes), cfg.feature_dim))), float(text.logit_scale)


def visual_evidence(text: np.ndarray, seed: int) -> np.ndarray:
    """Per-class visual direction: related to the class text (cos ~ 0.55) but not equal to it."""
    rng = np.random.default_rng([seed, 2])
    dim = text.shape[1]
    rotation = _random_rotation(rng, dim)
    own = _unit(rng.standard_normal(text.shape))
    return _unit(0.55 * text + 0.6 * text @ rotation.T + 0.55 * own)


# ------------------------------------------------------------------------------------------------ videos

def _place_instances(rng: np.random.Generator, duration: float, count: int) -> list[tuple[float, float]]:
    """Non-overlapping instances of 2-12 s (rounded to 0.1 s like THUMOS14), at least 2 s apart."""
    placed: list[tuple[float, float]] = []
    for _ in range(count * 20):
        if len(placed) == count:
            break
        length = rng.uniform(2.0, 12.0)
        start = round(float(rng.uniform(0.0, max(duration - length, 0.1))), 1)
        end = round(min(start + length, duration - 0.1), 1)
        if end - start < 1.5 or any(start < e + 2.0 and end > s - 2.0 for s, e in placed):
            continue
        placed.append((start, end))
    return sorted(placed)


def _video_plan(rng: np.random.Generator, cfg: SyntheticConfig, main_class: int) -> tuple[int, list]:
    length = int(rng.integers(cfg.min_length, cfg.max_length + 1))
    duration = length * STRIDE / FPS
    classes = [main_class]
    if rng.random() < 0.25:   # some videos hold a second class, as THUMOS14 videos sometimes do
        classes.append(int((main_class + rng.integers(1, cfg.num_classes)) % cfg.num_classes))
    count = int(rng.integers(3, 4 + length // 60))
    spans = _place_instances(rng, duration, count)
    labels = [classes[0] if k % 3 or len(classes) == 1 else classes[1] for k in range(len(spans))]
    return length, list(zip(spans, labels))


def _video_features(rng: np.random.Generator, length: int, instances: list, evidence: np.ndarray,
                    motion: np.ndarray) -> np.ndarray:
    num_classes, dim = evidence.shape
    t = np.arange(length, dtype=np.float64)
    # background: slow drift along a few random directions + per-snippet noise
    drift = np.zeros((length, dim))
    for _ in range(3):
        period = rng.uniform(40, 200)
        drift += 0.35 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))[:, None] * _unit(
            rng.standard_normal(dim))
    features = drift + rng.standard_normal((length, dim)) * (0.45 / math.sqrt(dim))
    centres = (t + 0.5) * STRIDE / FPS          # seconds at the middle of each snippet
    busy = np.zeros(length, dtype=bool)
    for (start, end), label in instances:
        # soft boundaries: a one-snippet ramp (in seconds) on each side of the annotated span
        ramp = np.clip(np.minimum(centres - start, end - centres) / (STRIDE / FPS) + 0.5, 0.0, 1.0)
        inside = ramp > 0
        busy |= inside
        amplitude = rng.uniform(0.7, 1.3)
        flicker = 1.0 + 0.2 * rng.standard_normal(length)
        # each instance shows its class a little differently
        look = _unit(evidence[label] + 0.7 * _unit(rng.standard_normal(dim)))
        features += (ramp * flicker)[:, None] * (amplitude * look + 0.6 * motion)[None, :]
    # camera motion: a slow fluctuation along the motion direction, everywhere
    shake = np.convolve(rng.standard_normal(length + 15), np.ones(16) / 4.0, mode="valid")[:length]
    features += 0.25 * shake[:, None] * motion[None, :]
    # distractors away from the actions: bursts of another class's evidence without motion, or of motion
    # without any class evidence; only their conjunction marks an action
    for _ in range(int(rng.integers(1, 2 + length // 60))):
        span = int(rng.integers(3, 16))
        start = int(rng.integers(0, max(1, length - span)))
        if busy[max(0, start - 2):start + span + 2].any():
            continue
        if rng.random() < 0.5:
            features[start:start + span] += 0.5 * evidence[int(rng.integers(num_classes))]
        else:
            features[start:start + span] += 0.6 * motion
    return features.astype(np.float32)


# ------------------------------------------------------------------------------------------------ writing

def _split_lists(cfg: SyntheticConfig, classes: list[str]) -> dict[str, str]:
    """Relative path -> content of the 2 x 10 x 2 split lists (seen / unseen classes, alphabetical)."""
    files = {}
    for split, folder in ((75, "train_75_test_25"), (50, "train_50_test_50")):
        n_train = int(round(len(classes) * split / 100))
        for split_id in range(10):
            order = np.random.default_rng([cfg.seed, 3, split, split_id]).permutation(len(classes))
            seen = sorted(classes[k] for k in order[:n_train])
            unseen = sorted(classes[k] for k in order[n_train:])
            for mode, names in (("train", seen), ("test", unseen)):
                files[f"splits/{folder}/THUMOS14/{mode}/split_{split_id}.list"] = "".join(f"{n}\n" for n in names)
    return files


def _descriptions(classes: list[str]) -> dict:
    return {name: {"idx": k, "Elaboration": {"Description": list(CLASS_STEPS[name])},
                   "Origin_Chat": json.dumps({"Description": CLASS_STEPS[name]})}
            for k, name in enumerate(classes)}


def write_synthetic_dataset(root: str | os.PathLike, cfg: SyntheticConfig, class_text: ClassText) -> Path:
    """Write the dataset into `root` (which must not exist or be empty). Returns `root`."""
    cfg.check()
    root = Path(root)
    classes = CLASS_NAMES[: cfg.num_classes]
    text, logit_scale = class_text_embeddings(cfg, classes, class_text)
    dim = text.shape[1]
    evidence = visual_evidence(text, cfg.seed)
    motion = _unit(np.random.default_rng([cfg.seed, 4]).standard_normal(dim))
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "CLIP").mkdir(exist_ok=True)

    database, info = {}, {}
    video_rng = np.random.default_rng([cfg.seed, 5])
    for subset, prefix, count in (("val", "syn_val", cfg.num_train_videos), ("test", "syn_test", cfg.num_test_videos)):
        main_classes = np.resize(video_rng.permutation(cfg.num_classes), count)  # balanced over classes
        for k in range(count):
            video_id = f"{prefix}_{k:04d}"
            length, instances = _video_plan(video_rng, cfg, int(main_classes[k]))
            frame_length = length * STRIDE + int(video_rng.integers(0, STRIDE))
            features = _video_features(video_rng, length, instances, evidence, motion)
            np.save(root / "features" / f"{video_id}.npy", features)
            database[video_id] = {
                "subset": subset,
                "annotations": [{"segment": [s, e], "label": classes[c]} for (s, e), c in instances],
                "fps": FPS,
                "duration": round(frame_length / FPS, 3),
            }
            info[video_id] = {"frame_length": frame_length, "snippet_length": length,
                              "frame_duration": frame_length / FPS, "video_fps": FPS,
                              "snippet_duration": length * STRIDE / FPS}

    files = {
        "Synthetic_annotations.json": json.dumps({"classes": classes, "database": database}),
        "CLIP/Synthetic_info_8frame.json": json.dumps(info),
        "Synthetic_description_v6.json": json.dumps(_descriptions(classes), indent=1),
        **_split_lists(cfg, classes),
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content, encoding="utf-8")
    np.savez(root / "text_embeddings.npz", class_names=np.array(classes, dtype=str),
             embeddings=text.astype(np.float32), logit_scale=np.asarray(logit_scale, dtype=np.float32),
             prompts=np.array([class_text.prompt_template.format(c) for c in classes], dtype=str))
    meta = {**asdict(cfg), "feature_dim": dim, "classes": classes, "num_videos": len(database)}
    (root / "synthetic_meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return root


def read_synthetic_meta(root: str | os.PathLike) -> dict | None:
    path = Path(root) / "synthetic_meta.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _wanted(cfg: SyntheticConfig) -> dict:
    wanted = asdict(cfg)
    if cfg.clip_model_name:   # the width then comes from CLIP
        wanted.pop("feature_dim")
    return wanted


def _matches(meta: dict, cfg: SyntheticConfig) -> bool:
    return all(meta.get(key) == value for key, value in _wanted(cfg).items())


def ensure_synthetic_dataset(root: str | os.PathLike, class_text: ClassText, seed: int = 0, force: bool = False,
                             **sizes) -> Path:
    """Generate the synthetic dataset under `root` unless an identical one is already there.

    Idempotent and atomic: the dataset is written into a temporary sibling folder and renamed into place,
    so an interrupted run never leaves a half-written dataset. `sizes` are `SyntheticConfig` fields
    (num_classes, num_train_videos, num_test_videos, min_length, max_length, feature_dim, clip_model_name).
    An existing dataset generated with other parameters is an error unless `force=True` (then replaced).
    `class_text`: see `ClassText` (utils/engine/synthetic.py's function of the same name fills it in).
    """
    unknown = set(sizes) - set(SyntheticConfig.__dataclass_fields__) - {"version"}
    if unknown:
        raise TypeError(f"ensure_synthetic_dataset: unknown parameters {sorted(unknown)}; expected some of "
                        f"{sorted(set(SyntheticConfig.__dataclass_fields__) - {'seed', 'version'})}")
    cfg = SyntheticConfig(seed=seed, **sizes)
    cfg.check()
    root = Path(root)
    meta = read_synthetic_meta(root)
    if meta is not None and _matches(meta, cfg) and not force:
        return root
    if root.exists() and any(root.iterdir()):
        if meta is None:
            raise FileExistsError(f"{root} exists and is not a synthetic dataset (no synthetic_meta.json); "
                                  f"choose another folder")
        if not force:
            differing = {k: (meta.get(k), v) for k, v in _wanted(cfg).items() if meta.get(k) != v}
            raise FileExistsError(f"{root} holds a synthetic dataset generated with other parameters "
                                  f"(existing, requested): {differing}; pass force=True (--force) to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700: the dataset folder follows the umask instead
    try:
        write_synthetic_dataset(tmp, cfg, class_text)
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, root)
            except OSError:   # another process finished first: keep its (identical) dataset
                meta = read_synthetic_meta(root)
                if meta is None or not _matches(meta, cfg):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
