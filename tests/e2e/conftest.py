"""Fixtures of the end-to-end tests: moto's server and the real CLI. The fresh host container
standing in for one EC2 instance (`host`, tests/conftest.py) is wired to an environment name by
tests/instancehost.py."""

from motocli import cli, moto_server  # noqa: F401  (fixtures)
