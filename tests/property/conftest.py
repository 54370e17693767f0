"""Hypothesis settings profiles for the property-based tests.

- "ci" (the default): few examples per test, derandomized (the same
  examples on every run, so CI is reproducible), no deadline (an XLA
  compile takes a second), no example database written to the checkout.
- "thorough": `pytest tests/property --hypothesis-profile=thorough` (the
  option of hypothesis's pytest plugin): many more random examples. Slow.
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


def pytest_configure(config):
    # The plugin loads `--hypothesis-profile` itself (this conftest may be
    # imported before or after that); without the option, use "ci".
    if not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")
