"""The hypothesis profile in effect is "ci" unless one is chosen."""

from hypothesis import settings


def test_profile_is_ci_unless_chosen(request):
    chosen = request.config.getoption("hypothesis_profile", default=None)
    expected = settings.get_profile(chosen or "ci")
    current = settings.default
    assert current.max_examples == expected.max_examples
    assert current.derandomize == expected.derandomize
    assert current.deadline is None and current.database is expected.database
