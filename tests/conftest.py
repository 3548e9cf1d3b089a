"""Fixtures more than one test module uses."""
from test_published import server  # noqa: F401  (a weights host on 127.0.0.1)
