"""What main.py and test.py share: seeding, data loaders and text embeddings (devices: utils/device.py)."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from datasets.collate import collate_batch
from models.text_encoder import check_embedding_dim
from utils.distributed import is_distributed, rank, shard_bounds, world_size


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA); make cuDNN deterministic as the original does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def make_loader(dataset, cfg, train: bool, generator: torch.Generator | None = None) -> DataLoader:
    """Training: shuffled, last partial batch dropped (as the original); inference: in dataset order.

    Under torchrun `--batch_size` is per process. Training draws from a DistributedSampler seeded with
    `--seed` (main.py calls its `set_epoch`); inference predicts this rank's contiguous shard of the items
    (`shard_bounds`: no duplicates), gathered back in dataset order by the evaluation.
    """
    sampler = None
    if is_distributed() and train:
        sampler = DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=cfg.seed,
                                     drop_last=True)
    elif is_distributed():
        dataset = Subset(dataset, range(*shard_bounds(len(dataset))))
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train, num_workers=cfg.num_workers, collate_fn=collate_batch,
                      generator=generator if sampler is None else None,
                      persistent_workers=cfg.num_workers > 0, pin_memory=torch.cuda.is_available())


def text_embeddings_for(dataset, text_encoder) -> torch.Tensor:
    """Class text embeddings of `dataset.classes`, checked against the dataset's feature dimension."""
    embeddings = text_encoder.encode(dataset.classes, dataset.descriptions)
    check_embedding_dim(embeddings, dataset.feature_dim, text_encoder.source)
    return embeddings
