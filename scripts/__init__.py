"""The project's scripts; those that use the test suite's modules run as ``python -m scripts.NAME``."""
