"""The human-like oracle: wrong more often near walls and on faint patterns, at the rate asked."""

import numpy as np
import pytest

from al4dstem.errors import Al4dstemError
from al4dstem.oracles import HumanLikeOracle  # exported by the package
from al4dstem.oracles.testing import check_oracle

ROWS, COLS = 40, 60


def truth_class(x, y):
    return 1 if y < 18 else 0 if y < 22 else 2  # vertical, a none wall at rows 18..21, horizontal


TRUTH = {(x, y): truth_class(x, y) for x in range(COLS) for y in range(ROWS)}
ALL = np.array(list(TRUTH), dtype=np.int64)


def wrong(oracle, positions=ALL):
    return np.array([a.label != TRUTH[(a.x, a.y)] for a in oracle.answers(positions)])


def test_overall_rate_is_the_rate_asked_and_errors_crowd_at_walls():
    oracle = HumanLikeOracle(TRUTH, error_rate=0.05, random_state=0)
    errors = wrong(oracle)
    assert abs(errors.mean() - 0.05) < 0.015
    assert abs(oracle.error_probability(ALL).mean() - 0.05) < 1e-9
    d_wall = np.array([min(abs(y - 17.5), abs(y - 21.5)) for _, y in ALL])
    near, far = d_wall <= 2, d_wall >= 6
    assert errors[near].mean() > 2.5 * errors[far].mean()
    p = oracle.error_probability(ALL)
    assert p[near].mean() > 3 * p[far].mean()


def test_wrong_answers_name_the_class_across_the_wall():
    oracle = HumanLikeOracle(TRUTH, error_rate=0.2, wall_factor=20, random_state=1)
    answers = list(oracle.answers(ALL))
    flipped = [a for a in answers if a.label != TRUTH[(a.x, a.y)]]
    assert flipped and all(a.source == "truth-flipped" for a in flipped)
    for a in flipped:
        if truth_class(a.x, a.y) in (1, 2):
            assert a.label == 0  # a polar domain borders the none wall, never the other polar class


def test_faint_patterns_err_more():
    faint = np.zeros((ROWS, COLS))
    faint[:, COLS // 2:] = 1.0
    oracle = HumanLikeOracle(TRUTH, error_rate=0.05, wall_factor=1, faintness=faint, faint_factor=4, random_state=0)
    errors = wrong(oracle)
    right_half = ALL[:, 0] >= COLS // 2
    assert errors[right_half].mean() > 2.5 * errors[~right_half].mean()
    assert abs(errors.mean() - 0.05) < 0.015


def test_no_errors_at_rate_zero_and_the_same_errors_for_the_same_seed():
    assert not wrong(HumanLikeOracle(TRUTH, error_rate=0.0, random_state=0)).any()
    a, b = (wrong(HumanLikeOracle(TRUTH, error_rate=0.05, random_state=3)) for _ in range(2))
    assert np.array_equal(a, b)
    c = wrong(HumanLikeOracle(TRUTH, error_rate=0.05, random_state=4))
    assert not np.array_equal(a, c)
    # one position at a time (a resumed run) hears the same as all at once
    one = HumanLikeOracle(TRUTH, error_rate=0.05, random_state=3)
    assert np.array_equal(a, np.concatenate([wrong(one, ALL[i:i + 1]) for i in range(len(ALL))]))


@pytest.mark.parametrize("options, words", [({"error_rate": 0.7}, "error rate"), ({"wall_factor": 0.5}, "wall factor"),
                                             ({"wall_reach": 0}, "wall reach"),
                                             ({"faintness": np.full((ROWS, COLS), 2.0)}, "faintness")])
def test_bad_settings_are_one_clear_error(options, words):
    with pytest.raises(Al4dstemError, match=words):
        list(HumanLikeOracle(TRUTH, **options).answers(ALL[:1]))


def test_keeps_the_oracle_contract(tmp_path):
    small = {(x, y): (1 if y < 2 else 2) for x in range(7) for y in range(5)}
    check_oracle(lambda: HumanLikeOracle(small, error_rate=0.3, random_state=0), tmp_path)
