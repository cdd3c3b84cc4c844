"""AWS EC2: a module of plain functions over dataclasses (SkyPilot's provisioner shape).

Identity comes from tags (`dlenv:name`), never only from local files, so two machines of the
same user see the same environments. Importing this package does not import boto3.
"""
