"""EveryN (sb3_plasticity.schedule): the steps at which events are due, for given frequencies, step sizes (n_envs),
starts (a resumed learn()) and a first event at once; known answers written out."""

from __future__ import annotations

import pytest

from sb3_plasticity.schedule import EveryN


def due_steps(schedule: EveryN, steps: range) -> list[int]:
    return [t for t in steps if schedule.poll(t)]


@pytest.mark.parametrize(
    "freq, start, steps, expected",
    [
        # one env: every multiple of freq, none at the start step itself
        (3, 0, range(1, 11), [3, 6, 9]),
        (1, 0, range(1, 5), [1, 2, 3, 4]),
        (5, 0, range(1, 5), []),  # learn() ends before the first multiple
        # four envs (num_timesteps 4, 8, 12, ...): the first step at or after each multiple of 6
        (6, 0, range(4, 40, 4), [8, 12, 20, 24, 32, 36]),
        # steps passing several multiples at once: one event
        (2, 0, range(5, 30, 5), [5, 10, 15, 20, 25]),
        (10, 0, range(7, 60, 7), [14, 21, 35, 42, 56]),
    ],
)
def test_due_steps(freq, start, steps, expected):
    schedule = EveryN(freq)
    schedule.start(start)
    assert due_steps(schedule, steps) == expected


def test_resume_in_the_middle_gives_the_steps_of_one_run():
    """learn(10) then learn(10, reset_num_timesteps=False): the second learn() starts the schedule again at step 10."""
    whole = EveryN(4)
    whole.start(0)
    assert due_steps(whole, range(1, 21)) == [4, 8, 12, 16, 20]
    first, second = EveryN(4), EveryN(4)
    first.start(0)
    assert due_steps(first, range(1, 11)) == [4, 8]
    second.start(10)
    assert second.next == 12
    assert due_steps(second, range(11, 21)) == [12, 16, 20]
    # a learn() that ended on a multiple ran its event there: the next learn() starts after it
    second.start(12)
    assert second.next == 16


def test_resume_with_several_envs():
    """n_envs=3, freq=5: the first run ends at step 9 (its event at 6), the resumed one continues from 9."""
    first = EveryN(5)
    first.start(0)
    assert due_steps(first, range(3, 10, 3)) == [6]
    resumed = EveryN(5)
    resumed.start(9)
    assert due_steps(resumed, range(12, 31, 3)) == [12, 15, 21, 27, 30]
    whole = EveryN(5)
    whole.start(0)
    assert due_steps(whole, range(3, 31, 3)) == [6, 12, 15, 21, 27, 30]


def test_first_event_at_once_then_multiples():
    """now=True (the monitor's schedule): the first event is due at the start step, later ones at multiples."""
    schedule = EveryN(5)
    schedule.start(7, now=True)
    assert schedule.next == 7 and schedule.is_due(7) and not schedule.is_due(6)
    assert due_steps(schedule, range(7, 23)) == [7, 10, 15, 20]


def test_is_due_and_advance_keep_an_event_pending():
    """is_due does not take the event: a caller that waits (for a training pass) advances when it is done."""
    schedule = EveryN(10)
    schedule.start(0)
    assert not schedule.is_due(9)
    assert schedule.is_due(10) and schedule.is_due(13)  # still due: nothing taken
    schedule.advance(13)
    assert schedule.next == 20 and schedule.last == 10
    assert not schedule.is_due(19)


def test_last_is_the_multiple_of_the_event_taken():
    schedule = EveryN(100)
    schedule.start(0)
    assert schedule.poll(130) and schedule.last == 100 and schedule.next == 200
    assert schedule.poll(450) and schedule.last == 400


def test_bad_freq_names_the_parameter():
    with pytest.raises(ValueError, match=r"^grow_interval must be a positive integer \(env steps\), got 0$"):
        EveryN(0, name="grow_interval")
    with pytest.raises(ValueError, match=r"^freq must be a positive integer \(env steps\), got 2.5$"):
        EveryN(2.5)
