from motocli import cli, moto_server  # noqa: F401  (fixtures)
