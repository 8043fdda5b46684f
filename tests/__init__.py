"""orsguard's test suite; shared builders and fixtures are in ``conftest.py``."""
