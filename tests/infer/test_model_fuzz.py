"""Fuzzing the model loader: mutated seedlike models load and denoise, or raise ModelLoadError.

A bounded run (120 seeded cases, a few seconds); ``scripts/fuzz_models.py
--cases N --seed S`` runs the same cases for longer.
"""

from __future__ import annotations

import pytest

from tests.infer import model_mutations as mutations

CASES = 120
#: No case may take longer than this (a hang or a huge allocation shows up here).
MAX_CASE_SECONDS = 10.0


@pytest.fixture(scope="module")
def reference():
    return mutations.reference_output()


@pytest.mark.parametrize("start", range(0, CASES, 20))
def test_mutated_models_load_and_denoise_or_are_refused(tmp_path, reference, start):
    outcomes = {}
    for index in range(start, start + 20):
        case = mutations.make_case(0, index)
        outcome, seconds = mutations.check_case(case, tmp_path, reference)
        assert seconds < MAX_CASE_SECONDS, (index, case.kind, case.detail, seconds)
        outcomes.setdefault(case.kind, set()).add(outcome)
    assert set(outcomes) == set(mutations.KINDS)


def test_every_hostile_metadata_value_is_handled(tmp_path, reference):
    """Each hostile value of each metadata key at least once (not left to chance)."""
    outcomes = set()
    for case in mutations.every_hostile_prop():
        outcome, seconds = mutations.check_case(case, tmp_path, reference)
        assert seconds < MAX_CASE_SECONDS, (case.detail, seconds)
        outcomes.add(outcome)
    assert outcomes == {"ok", "refused"}


@pytest.mark.parametrize(
    ("seed", "index"),
    [
        (1, 576),  # AveragePool kernel changed: right on a 1-stride-wide test input only
        (2, 195),  # a flipped bit made a metadata string invalid UTF-8
    ],
)
def test_cases_found_by_longer_runs(tmp_path, reference, seed, index):
    case = mutations.make_case(seed, index)
    mutations.check_case(case, tmp_path, reference)
