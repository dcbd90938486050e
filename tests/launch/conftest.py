"""The launch tests' fixtures: the emulated multi-node cluster (tests/emulated_testing.py)."""

from emulated_testing import emulated_hal  # noqa: F401
