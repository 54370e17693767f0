"""Hypothesis settings profiles of the property-based tests.

- "ci" (loaded here, so the default): few examples per test,
  derandomized (the same examples on every run, so CI is reproducible),
  no deadline (an XLA compile takes a second), no example database
  written into the checkout.
- "thorough": `pytest tests/property --hypothesis-profile=thorough` (the
  option of hypothesis's pytest plugin, which loads it after this module
  ran): many more random examples. Slow.

Imported by tests/conftest.py, which pytest loads before the plugin reads
its option whatever paths are given (tests/property/conftest.py is loaded
too late when only `tests` is named: "Profile 'thorough' is not
registered").
"""

from hypothesis import HealthCheck
from hypothesis import settings

_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    # tests/conftest.py's autouse seed fixture is function-scoped; it only
    # seeds Keras and does not need resetting between examples.
    HealthCheck.function_scoped_fixture,
]
settings.register_profile(
    "ci",
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile("ci")
