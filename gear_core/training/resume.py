"""Exact resumption of training from any checkpoint, also one written in the middle of an epoch.

A resumed run must take the same steps the uninterrupted run would have taken. Lightning restores the weights,
the optimizer, the LR scheduler, the loop counters (so ``batch_idx`` and the soft-label ramp carry on) and the
module's state dict (which holds the momentum encoder and its queue: ``self.momentum`` is a submodule). Two
things it does not restore:

- **The position in the epoch's data order.** Lightning restores it only for a training dataloader with
  ``state_dict()`` / ``load_state_dict()``: :class:`ResumableDataLoader` counts the batches it has handed to
  the loop (counting in the sampler would be wrong with workers, which draw indices ahead) and, after a reload,
  starts the epoch's order past them. With :class:`~gear_core.training.datamodule.EpochShuffleSampler` as its
  sampler it skips their indices (no batch is built); with another sampler (Lightning wraps it for DDP) it builds
  and drops those batches, which is exact but costs their collation.
- **The random streams** (dropout; torch, numpy and python RNGs). Rather than save the streams as they stand
  when a checkpoint is written (later validation, data-loader start-up or a checkpoint written before or after
  validation would then move them differently in the two runs), :func:`seed_batch` reseeds every generator at
  the start of each training batch from the run's seed, the epoch, the batch index and the rank. A batch's
  randomness is then a function of where it sits in training alone; the run's seed is kept in the checkpoint.

Workers (``num_workers > 0``) keep the result exact: batches are built from the indices alone (collation draws
no random numbers), so which process builds them does not matter.

What cannot be made exact is refused with :class:`ResumeError` rather than silently diverging: a mid-epoch
checkpoint with another dataset size, batch size, data seed or number of ranks, a training dataloader that cannot
restore its position, and checkpoints written before this module existed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

RNG_SEED_KEY = "gear_rng_seed"
NEW_STAGE_HINT = (
    "To go on from it anyway, start a new stage from its weights (see README, Training: "
    "--model.model_name_or_path runs/X/best --model.config_overrides null, and a new --data.seed)."
)


class ResumeError(RuntimeError):
    """A resume that cannot reproduce the uninterrupted run."""


def seed_batch(seed: int, epoch: int, batch_idx: int, rank: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and python for one training batch."""
    words = np.random.SeedSequence([seed % 2**63, epoch, batch_idx, rank]).generate_state(2, dtype=np.uint32)
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(int(words[0]))
    random.seed(int(words[1]))


def _base_sampler(loader: DataLoader) -> Any:
    """The user's sampler, also when Lightning has wrapped it in a ``DistributedSamplerWrapper``."""
    sampler = loader.sampler
    inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
    return sampler if inner is None else inner


class ResumableDataLoader(DataLoader):
    """A DataLoader that Lightning saves and reloads mid-epoch (``state_dict`` / ``load_state_dict``).

    ``batches_yielded`` counts the batches of the current epoch handed out so far, skipped ones included.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_yielded = 0
        self._epoch_of_iteration: int | None = None
        self._pending: dict[str, Any] | None = None

    def _epoch(self) -> int | None:
        # DistributedSampler(Wrapper) and EpochShuffleSampler both keep the epoch Lightning set as `.epoch`.
        return getattr(self.sampler, "epoch", None)

    def _signature(self) -> dict[str, Any]:
        return {
            "length": len(self),
            "dataset_size": len(self.dataset),
            "batch_size": self.batch_size,
            "seed": getattr(_base_sampler(self), "seed", None),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch_of_iteration, "batches": self.batches_yielded, **self._signature()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not 0 < state["batches"] < state["length"]:
            return  # saved at an epoch boundary: the next epoch starts from its beginning anyway
        now = self._signature()
        changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
        if changed:
            details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ResumeError(
                f"this checkpoint was written after batch {state['batches']} of an epoch, but the training data "
                f"differ from the checkpoint's ({details}; a changed number of ranks changes `length`), so its "
                f"epoch cannot be continued in the same order. {NEW_STAGE_HINT}"
            )
        self._pending = state

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing (no sampler, no worker) starts before the first batch is asked for, which is after
        # Lightning has called `set_epoch` for the epoch.
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        epoch, pending, self._pending = self._epoch(), self._pending, None
        skip = pending["batches"] if pending is not None and pending["epoch"] == epoch else 0
        self._epoch_of_iteration, self.batches_yielded = epoch, 0
        sampler = self.sampler
        if skip and hasattr(sampler, "skip") and self.batch_size is not None:
            sampler.skip(skip * self.batch_size)  # consecutive indices make consecutive batches
            self.batches_yielded, skip = skip, 0
        iterator = super().__iter__()
        for batch in iterator:
            self.batches_yielded += 1
            if self.batches_yielded <= skip:
                continue
            yield batch


def loader_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The training dataloader states Lightning wrote into a checkpoint."""
    return checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])


def restore_loader_position(trainer: Any, states: list[dict[str, Any]]) -> None:
    """Hand the checkpoint's dataloader states to the training dataloaders, before their first batch.

    Lightning means to do this itself, but skips it when ``configure_optimizers`` has read
    ``trainer.estimated_stepping_batches`` (ours does): the loaders are built before the checkpoint's loop state
    is restored and are then not reloaded (Lightning issue #20550). Loading the same state twice is harmless.
    """
    if trainer.ckpt_path is None or not states:
        return
    loader = trainer.train_dataloader
    if isinstance(loader, dict):
        loaders = list(loader.values())
    else:
        loaders = list(loader) if isinstance(loader, (list, tuple)) else [loader]
    stateful = [x for x in loaders if hasattr(x, "state_dict") and hasattr(x, "load_state_dict")]
    if len(stateful) == len(states):
        for x, state in zip(stateful, states, strict=True):
            x.load_state_dict(state)


def check_resume(trainer: Any, rng_seed: int | None, batch_idx: int) -> None:
    """At the first training batch after a checkpoint was loaded: refuse a resume that cannot be exact.

    Does nothing unless the fit resumes from a checkpoint (``trainer.ckpt_path``); a model loaded with
    ``load_from_checkpoint`` and then fitted afresh is not a resume.
    """
    if trainer.ckpt_path is None:
        return
    if rng_seed is None:
        raise ResumeError(
            f"{trainer.ckpt_path} was written before resumption was made exact (it holds no {RNG_SEED_KEY}), so "
            f"the resumed run's dropout would not be the uninterrupted run's. {NEW_STAGE_HINT}"
        )
    if batch_idx == 0:
        return  # the epoch starts from its beginning: no position to restore
    loader = trainer.train_dataloader
    if not isinstance(loader, ResumableDataLoader):
        raise ResumeError(
            f"resuming at batch {batch_idx} of an epoch, but the training dataloader ({type(loader).__name__}) "
            "cannot restore its position, so the epoch would restart its data order. Return a "
            f"gear_core.training.resume.ResumableDataLoader from train_dataloader(). {NEW_STAGE_HINT}"
        )
    if loader.batches_yielded != batch_idx + 1:
        raise ResumeError(
            f"resuming at batch {batch_idx} of an epoch, but the training dataloader restarted at batch "
            f"{loader.batches_yielded - 1} (the checkpoint holds no position for it). {NEW_STAGE_HINT}"
        )
