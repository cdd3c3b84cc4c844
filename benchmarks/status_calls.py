"""EC2 API calls made by `dlenv status` with 1, 10 and 100 environments (moto, in-process).

usage: python benchmarks/status_calls.py
Counts every request through botocore's event hooks. The listing must stay O(pages): one
paginated DescribeInstances for all environments, never one call per instance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _recorder(calls: list[str]):
    def record(model, **kwargs) -> None:
        calls.append(model.name)

    return record


def main() -> None:
    from awsfake import FAKE_ENV, seed_ubuntu

    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from moto import mock_aws

    from dlenv.cloud import instances
    from dlenv.cloud.session import Aws

    print(f"{'environments':>12} {'API calls':>10} {'calls/env':>10}  operations")
    for count in (1, 10, 100):
        with mock_aws():
            ids = seed_ubuntu("us-east-1")
            aws = Aws(region="us-east-1")
            for i in range(count):
                aws.ec2.run_instances(
                    ImageId=ids["24.04"],
                    InstanceType="g4dn.xlarge",
                    MinCount=1,
                    MaxCount=1,
                    TagSpecifications=[
                        {
                            "ResourceType": "instance",
                            "Tags": [{"Key": "dlenv:name", "Value": f"env{i}"}],
                        }
                    ],
                )
            calls: list[str] = []
            aws.ec2.meta.events.register("before-call.ec2.*", _recorder(calls))
            envs = instances.list_environments(aws)
            assert len(envs) == count
            ops = sorted(set(calls))
            print(f"{count:>12} {len(calls):>10} {len(calls) / count:>10.2f}  {', '.join(ops)}")


if __name__ == "__main__":
    main()
