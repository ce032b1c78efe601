"""DrQ random shift: exact shifts recovered from coordinate images, independence per sample and between obs and
next_obs, equality with replicate-pad-and-crop, the replay buffers (plain, n-step, experience review) and SAC."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from helpers import image_env
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_plasticity import DrQExperienceReviewBuffer, DrQNStepReplayBuffer, DrQReplayBuffer, random_shift

H, W = 16, 20


def coordinate_images(batch: int, dtype=th.uint8) -> th.Tensor:
    """Channel 0 holds each pixel's row, channel 1 its column, channel 2 the sample's index."""
    rows = th.arange(H).view(1, H, 1).expand(batch, H, W)
    cols = th.arange(W).view(1, 1, W).expand(batch, H, W)
    ids = th.arange(batch).view(batch, 1, 1).expand(batch, H, W)
    return th.stack([rows, cols, ids], dim=1).to(dtype)


def recovered_shifts(out: th.Tensor) -> th.Tensor:
    """``(dy, dx)`` per sample, read at the centre pixel (shifts are at most 4 < H/2, W/2)."""
    return th.stack([out[:, 0, H // 2, W // 2].long() - H // 2, out[:, 1, H // 2, W // 2].long() - W // 2], dim=1)


def expected_shift(images: th.Tensor, shifts: th.Tensor) -> th.Tensor:
    """The definition, pixel by pixel: out[b, c, i, j] = images[b, c, clamp(i + dy), clamp(j + dx)]."""
    out = th.empty_like(images)
    for b, (dy, dx) in enumerate(shifts.tolist()):
        rows = (th.arange(H) + dy).clamp(0, H - 1)
        cols = (th.arange(W) + dx).clamp(0, W - 1)
        out[b] = images[b][:, rows][:, :, cols]
    return out


def test_each_image_moves_by_at_most_pad_pixels_independently():
    images = coordinate_images(512)
    out = random_shift(images, pad=4, generator=th.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == th.uint8
    shifts = recovered_shifts(out)
    assert shifts.abs().max() <= 4
    th.testing.assert_close(out, expected_shift(images, shifts), rtol=0, atol=0)  # edges replicated, exact
    th.testing.assert_close(out[:, 2], images[:, 2], rtol=0, atol=0)  # samples never mix
    assert len({tuple(s) for s in shifts.tolist()}) > 60  # of the 81 (dy, dx) pairs
    assert set(shifts[:, 0].tolist()) == set(range(-4, 5)) == set(shifts[:, 1].tolist())


def test_equals_replicate_pad_then_crop():
    images = th.rand(8, 6, H, W)
    out = random_shift(images, pad=3, generator=th.Generator().manual_seed(1))
    padded = F.pad(images, (3, 3, 3, 3), mode="replicate")
    # find each sample's crop window among the 7x7 candidates
    for b in range(8):
        windows = [(y, x) for y in range(7) for x in range(7) if th.equal(padded[b, :, y : y + H, x : x + W], out[b])]
        assert windows, b


def test_generator_reproducibility_pad_zero_and_shapes():
    images = coordinate_images(32)
    first = random_shift(images, generator=th.Generator().manual_seed(7))
    th.testing.assert_close(random_shift(images, generator=th.Generator().manual_seed(7)), first)
    th.testing.assert_close(random_shift(images, pad=0), images)
    rows = random_shift(images[:, 0], pad=2)  # (batch, H, W): the row channel alone
    assert rows.shape == (32, H, W) and (rows[:, H // 2, W // 2].long() - H // 2).abs().max() <= 2
    stacked = th.cat([images, images], dim=1).view(32, 2, 3, H, W)  # frames share their sample's shift
    out = random_shift(stacked)
    th.testing.assert_close(out[:, 0], out[:, 1])


@pytest.mark.parametrize(
    "images, pad, error, match",
    [
        (np.zeros((2, 3, 8, 8), dtype=np.uint8), 4, TypeError, "images must be a torch.Tensor"),
        (th.zeros(8, 8), 4, ValueError, "at least 3 dims"),
        (th.zeros(2, 8, 8), -1, ValueError, r"^pad must be an integer >= 0, got -1$"),
        (th.zeros(2, 8, 8), 1.5, ValueError, r"^pad must be an integer >= 0, got 1.5$"),
    ],
)
def test_bad_input(images, pad, error, match):
    with pytest.raises(error, match=match):
        random_shift(images, pad=pad)


def filled_buffer(cls, observation_space, **kwargs):
    buffer = cls(64, observation_space, spaces.Box(-1, 1, (2,)), device="cpu", **kwargs)
    channels_first = observation_space.shape[0] == 3
    for k in range(64):
        image = coordinate_images(1)[0].numpy()
        image[2] = k  # the transition's index
        obs = image if channels_first else image.transpose(1, 2, 0)
        buffer.add(obs[None], obs[None], np.zeros((1, 2)), np.zeros(1), np.array([k % 10 == 9]), [{}])
    return buffer


IMAGE_SPACE = spaces.Box(0, 255, (3, H, W), np.uint8)


@pytest.mark.parametrize("cls", [DrQReplayBuffer, DrQNStepReplayBuffer, DrQExperienceReviewBuffer])
def test_buffers_shift_obs_and_next_obs_independently(cls):
    buffer = filled_buffer(cls, IMAGE_SPACE)
    stored = buffer.observations.copy()
    if cls is DrQExperienceReviewBuffer:
        buffer.review_probability = 1.0  # the review path goes through the same hook
    batch = buffer.sample(256)
    obs, next_obs = batch.observations, batch.next_observations
    assert obs.dtype == th.uint8 and obs.shape == (256, 3, H, W)
    shifts, next_shifts = recovered_shifts(obs), recovered_shifts(next_obs)
    assert shifts.abs().max() <= 4 and next_shifts.abs().max() <= 4
    assert (shifts != next_shifts).any(dim=1).float().mean() > 0.8  # 80/81 differ when independent
    th.testing.assert_close(obs, expected_shift(buffer.to_torch(stored[obs[:, 2, 0, 0].long().numpy(), 0]), shifts))
    np.testing.assert_array_equal(buffer.observations, stored)  # stored data untouched
    if cls is DrQExperienceReviewBuffer:
        assert buffer.n_review_batches == 1 and obs[:, 2, 0, 0].max() < 16  # the oldest quarter, shifted


def test_experience_review_buffer_with_n_step_returns():
    """NE-DrQ (NE Table 3: 3-step returns): review batches from the oldest quarter carry n-step targets, and shifts."""
    np.random.seed(0)
    buffer = DrQExperienceReviewBuffer(64, IMAGE_SPACE, spaces.Box(-1, 1, (2,)), device="cpu", n_steps=3, gamma=0.5)
    for k in range(80):  # holds 16-79; the oldest quarter: 16-31
        obs, next_obs = coordinate_images(1)[0].numpy(), coordinate_images(1)[0].numpy()
        obs[2], next_obs[2] = k, k + 1  # channel 2: the step (a constant image plane, unchanged by shifts)
        buffer.add(obs[None], next_obs[None], np.zeros((1, 2)), np.array([k + 1.0]), np.array([False]), [{}])
    buffer.review_probability = 1.0
    batch = buffer.sample(128)
    steps = batch.observations[:, 2, 0, 0].double().numpy()
    assert set(steps) <= set(range(16, 32)) and buffer.n_review_batches == 1
    np.testing.assert_allclose(batch.rewards.numpy().ravel(), (steps + 1) + 0.5 * (steps + 2) + 0.25 * (steps + 3))
    np.testing.assert_array_equal(batch.next_observations[:, 2, 0, 0].double().numpy(), steps + 3)
    assert th.all(batch.discounts == 0.125) and recovered_shifts(batch.observations).abs().max() <= 4


def test_channel_last_buffer_and_non_image_error():
    buffer = filled_buffer(DrQReplayBuffer, spaces.Box(0, 255, (H, W, 3), np.uint8), pad=2)
    obs = buffer.sample(128).observations
    assert obs.shape == (128, H, W, 3)
    assert recovered_shifts(obs.permute(0, 3, 1, 2)).abs().max() <= 2
    with pytest.raises(ValueError, match="must be a uint8 image Box"):
        DrQReplayBuffer(10, spaces.Box(-1, 1, (5,)), spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match="pad must be"):
        DrQReplayBuffer(10, IMAGE_SPACE, spaces.Box(-1, 1, (2,)), pad=-2)
    assert not issubclass(ReplayBuffer, DrQReplayBuffer) and issubclass(DrQReplayBuffer, ReplayBuffer)


def test_sac_cnn_policy_learns_with_drq_buffer():
    model = SAC(
        "CnnPolicy",
        image_env(discrete=False),
        replay_buffer_class=DrQReplayBuffer,
        replay_buffer_kwargs={"pad": 4},
        buffer_size=200,
        learning_starts=40,
        batch_size=16,
        policy_kwargs={"net_arch": [32], "features_extractor_kwargs": {"features_dim": 16}},
        device="cpu",
        seed=0,
    )
    assert isinstance(model.replay_buffer, DrQReplayBuffer) and model.replay_buffer.channels_first
    model.learn(60)
    assert model._n_updates == 20
