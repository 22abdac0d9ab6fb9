import pytest

from steps.compression.schedules import SCHEDULES, cubic, geometric, get_schedule, linear, one_shot


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("rounds", [1, 3, 10])
def test_every_schedule_ends_at_target_and_never_decreases(name, rounds):
    values = get_schedule(name)(0.9, rounds)
    assert len(values) == rounds
    assert values[-1] == pytest.approx(0.9)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))


def test_golden_values():
    assert linear(0.9, 3) == pytest.approx([0.3, 0.6, 0.9])
    assert one_shot(0.8, 2) == [0.8, 0.8]
    # remaining density shrinks by the same factor each round: 1 - 0.1**(t/2)
    assert geometric(0.99, 2) == pytest.approx([0.9, 0.99])
    # Zhu & Gupta: s_t = s_f + (s_i - s_f)(1 - t/n)^3 with s_i=0, s_f=0.8, n=4
    assert cubic(0.8, 4) == pytest.approx([0.8 - 0.8 * 0.75**3, 0.8 - 0.8 * 0.5**3, 0.8 - 0.8 * 0.25**3, 0.8])


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'exp'.*cubic.*geometric"):
        get_schedule("exp")
