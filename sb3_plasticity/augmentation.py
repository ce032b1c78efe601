"""DrQ's random-shift image augmentation (Yarats et al. 2021, "Image Augmentation Is All You Need", Sec. 3.1).

"We pad each side by 4 pixels (by repeating boundary pixels) and then select a random 84 x 84 crop": every
image moves by an independent integer shift in ``[-pad, pad]`` along each axis, the edge rows and columns
filling the space it leaves.

- :func:`random_shift`: the pure function, on a batch of images (any dtype, any device).
- :class:`RandomShiftMixin`: a replay-buffer mixin that shifts ``observations`` and ``next_observations`` of every
  sampled batch, each sample and each of the two with its own shift (DrQ draws them independently).
  ``SAC("CnnPolicy", pixel_env, replay_buffer_class=DrQReplayBuffer)`` is then DrQ in SB3's terms;
  :class:`DrQNStepReplayBuffer` adds SB3's n-step returns (DrQ-v2, NE Table 3: 3 steps) and
  :class:`DrQExperienceReviewBuffer` composes it with NE's :class:`~sb3_plasticity.ExperienceReviewBuffer` (n-step
  returns with ``n_steps=3``, review batches included).

Where this differs from DrQ (see ``docs/environments.md``): one augmentation per sample (DrQ's K = M = 1, as
DrQ-v2), no averaging of the target or of Q over several augmentations (DrQ's K = M = 2); shifts by index
gathering (equivalent to pad-and-crop, exact integers); the encoder is whatever the policy uses (SB3's
NatureCNN for ``CnnPolicy``), not DrQ's 4-layer 32-channel encoder with a 50-d LayerNorm-tanh output.
Batches drawn from the buffer for other purposes (probe batches of the plasticity callbacks) are shifted too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_plasticity.buffers import ExperienceReviewBuffer, LazyStorageMixin
from sb3_plasticity.checks import check_int

__all__ = [
    "DrQExperienceReviewBuffer",
    "DrQNStepReplayBuffer",
    "DrQReplayBuffer",
    "RandomShiftMixin",
    "random_shift",
]


def random_shift(images: th.Tensor, pad: int = 4, generator: th.Generator | None = None) -> th.Tensor:
    """Shift each image of a batch by its own random integer offset, replicating the edge pixels (DrQ).

    Equal to padding each side by ``pad`` pixels with the edge values and cropping a random window of the
    original size: ``out[b, ..., i, j] = images[b, ..., clamp(i + dy_b), clamp(j + dx_b)]`` with ``dy_b, dx_b``
    drawn uniformly from ``{-pad, ..., pad}`` for each sample ``b``. All channels of a sample (all frames of a
    stacked observation) share its shift.

    :param images: ``(batch, ..., height, width)``, at least 3 dims (channel-first, as SB3 stores images); any dtype.
    :param pad: the largest shift in pixels, >= 0 (default 4, DrQ Sec. 3.1); 0 returns a copy.
    :param generator: torch generator for the shifts (default: torch's global one, so ``set_random_seed`` applies);
        the shifts are drawn on its device and moved to the images'.
    :return: a new tensor, same shape, dtype and device.
    """
    if not isinstance(images, th.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() < 3:
        raise ValueError(f"images must be (batch, ..., height, width) with at least 3 dims, got shape {tuple(images.shape)}")
    pad = check_int("pad", pad, 0)
    if pad == 0 or images.shape[0] == 0:
        return images.clone()
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    flat = images.reshape(batch, -1, height, width)
    channels = flat.shape[1]
    draw_device = generator.device if generator is not None else th.device("cpu")
    shifts = th.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=draw_device).to(images.device) - pad
    # source row/column of every output row/column; clamping at the border is the replicate padding
    rows = (th.arange(height, device=images.device)[None, :] + shifts[:, :1]).clamp_(0, height - 1)
    cols = (th.arange(width, device=images.device)[None, :] + shifts[:, 1:]).clamp_(0, width - 1)
    out = flat.gather(2, rows[:, None, :, None].expand(batch, channels, height, width))
    out = out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    return out.reshape(images.shape)


class RandomShiftMixin:
    """Replay-buffer mixin: every sampled batch gets :func:`random_shift` on ``observations`` and ``next_observations``.

    Put it before a ``ReplayBuffer`` subclass in the bases (``class B(RandomShiftMixin, SomeReplayBuffer)``); it
    hooks ``_get_samples``, which every sampling path of SB3's buffers (and of ``ExperienceReviewBuffer``'s review
    batches) goes through, after ``VecNormalize`` and n-step bookkeeping. The stored data are never changed.

    :param pad: the largest shift in pixels, >= 0 (default 4, DrQ Sec. 3.1); a ``replay_buffer_kwargs`` entry.
    :param args: the buffer's own arguments (``buffer_size``, ``observation_space``, ...).
    :param kwargs: the buffer's own keyword arguments.
    :raises ValueError: for an observation space that is not an image (a uint8 ``Box`` of shape ``(C, H, W)`` or
        ``(H, W, C)`` with bounds 0-255).
    """

    observation_space: Any

    def __init__(self, *args: Any, pad: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = check_int("pad", pad, 0)
        if not is_image_space(self.observation_space, check_channels=False):
            raise ValueError(
                f"{type(self).__name__} shifts images: the observation space must be a uint8 image Box (C, H, W) or "
                f"(H, W, C) with bounds [0, 255], got {self.observation_space}"
            )
        self.channels_first = is_image_space_channels_first(self.observation_space)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        samples = super()._get_samples(batch_inds, env=env)  # type: ignore[misc]
        return samples._replace(
            observations=self._shift(samples.observations), next_observations=self._shift(samples.next_observations)
        )

    def _shift(self, images: th.Tensor) -> th.Tensor:
        if self.channels_first:
            return random_shift(images, self.pad)
        # (B, H, W, C): move H and W last for the shift and back
        return random_shift(images.permute(0, 3, 1, 2), self.pad).permute(0, 2, 3, 1)


class DrQReplayBuffer(RandomShiftMixin, LazyStorageMixin, ReplayBuffer):
    """SB3's ``ReplayBuffer`` with DrQ's random shift on sampled ``observations`` and ``next_observations``; its storage
    takes memory only as transitions are written (:class:`~sb3_plasticity.buffers.LazyStorageMixin`).

    ``SAC("CnnPolicy", pixel_env, replay_buffer_class=DrQReplayBuffer, replay_buffer_kwargs=dict(pad=4))``.

    :param pad: the largest shift in pixels (default 4, DrQ Sec. 3.1); the other arguments are ``ReplayBuffer``'s.
    """


class DrQNStepReplayBuffer(RandomShiftMixin, LazyStorageMixin, NStepReplayBuffer):
    """SB3's ``NStepReplayBuffer`` (n-step returns) with DrQ's random shift, DrQ-v2's combination (NE Table 3: 3 steps);
    its storage takes memory only as transitions are written (:class:`~sb3_plasticity.buffers.LazyStorageMixin`).

    ``replay_buffer_kwargs=dict(n_steps=3, gamma=0.99, pad=4)``; ``gamma`` must equal the algorithm's.

    :param pad: the largest shift in pixels (default 4, DrQ Sec. 3.1); the others are ``NStepReplayBuffer``'s.
    """


class DrQExperienceReviewBuffer(RandomShiftMixin, ExperienceReviewBuffer):
    """NE's :class:`~sb3_plasticity.ExperienceReviewBuffer` with DrQ's random shift on every batch, review batches too
    (NE-DrQ, NE Sec. 4.3). ``n_steps=3`` gives every batch, uniform or review (from the oldest quarter), SB3's
    n-step returns (NE Table 3: 3-step returns):
    ``replay_buffer_kwargs=dict(review_window=250, review_floor=0.18, n_steps=3, gamma=0.99, pad=4)``; ``gamma``
    must equal the algorithm's.

    :param pad: the largest shift in pixels (default 4, DrQ Sec. 3.1); the others (``n_steps``, ``gamma``,
        ``review_window``, ``review_floor``) are ``ExperienceReviewBuffer``'s.
    """
