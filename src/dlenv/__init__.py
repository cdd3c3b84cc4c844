"""dlenv: a working deep-learning GPU environment in one command.

Importing this package must stay cheap: `dlenv --help` is run often and must not pull in
boto3, Fabric/paramiko or the Docker SDK. Heavy imports live inside the functions that need them.
"""

__version__ = "0.1.0"
