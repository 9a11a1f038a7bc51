"""Values that follow a study's epochs (``search_spaces.formulas``): evaluated for each run
length, nothing but arithmetic in ``epochs`` accepted."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search_spaces.formulas import Choices, Formula, Range, at_epochs, mentions_epochs


def test_a_formula_follows_the_epochs():
    warmup = Formula("min(1.0, epochs / 2)")
    assert (warmup(1), warmup(5)) == (0.5, 1.0)
    assert Formula("max(1, round(0.4 * epochs))")(15) == 6
    assert Formula("-epochs // 2 + (epochs - 1)")(5) == 1


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("epochs.real", "epochs.real"),
        ("open('f')", "open('f')"),
        ("epochs ** 2", "Pow"),
        ("x + 1", "x"),
        ("min + 1", "min"),
        ("True + epochs", "True"),
        ("round(epochs, ndigits=1)", "round(epochs, ndigits=1)"),
        ("1 +", "not a formula"),
    ],
)
def test_anything_but_arithmetic_in_epochs_is_refused_and_named(text, refused):
    with pytest.raises(ValueError, match="is not arithmetic in epochs") as err:
        Formula(text)
    assert f"({refused})" in str(err.value) and "min, max and round" in str(err.value)


def test_a_division_by_zero_names_the_epochs():
    with pytest.raises(ValueError, match="divides by zero at 3 epochs"):
        Formula("1 / (epochs - 3)")(3)


def test_ranges_and_choices_become_distributions_for_the_epochs():
    assert Range(0.0, Formula("epochs / 2"))(3) == FloatDistribution(0.0, 1.5)
    assert Range(1, Formula("epochs - 1"), integer=True)(5) == IntDistribution(1, 4)
    with pytest.raises(ValueError, match="whole ends, but high is 2.5 at 5 epochs"):
        Range(1, Formula("epochs / 2"), integer=True)(5)
    choices = Choices((Formula("epochs / 2"), 1.0))
    assert choices(4) == CategoricalDistribution((2.0, 1.0))


def test_tables_and_lists_are_resolved_inside():
    params = {"milestones": [Formula("epochs // 3"), Formula("epochs - 1")], "gamma": 0.1}
    assert at_epochs(params, 9) == {"milestones": [3, 8], "gamma": 0.1}
    assert at_epochs("cosine", 9) == "cosine"


def test_only_a_string_that_uses_epochs_is_a_formula():
    assert mentions_epochs("epochs / 4") and not mentions_epochs("cosine")
    assert not mentions_epochs("warmup_epochs")
