"""ProxyCommand for the cluster tests: reach the host container that stands in for an instance.

usage: python cluster_relay.py HOST MAPFILE
HOST is the address dlenv connects to (`%h`: the instance's public IP that moto assigned). The
relay asks moto (AWS_ENDPOINT_URL, inherited from the dlenv process) which environment has that
address, looks the environment's name up in MAPFILE (JSON: {name: container's SSH port}) and
relays stdin/stdout to that port, as tests/e2e/relay.py does for one fixed container.
"""

import json
import sys
from pathlib import Path


def environment_of(address: str) -> str:
    import boto3

    ec2 = boto3.client("ec2")
    for key in ("ip-address", "private-ip-address"):
        found = ec2.describe_instances(Filters=[{"Name": key, "Values": [address]}])
        for reservation in found["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                if "dlenv:name" in tags:
                    return tags["dlenv:name"]
    raise SystemExit(f"cluster_relay: no instance has address {address}")


def main() -> None:
    address, mapfile = sys.argv[1], Path(sys.argv[2])
    name = environment_of(address)
    ports = json.loads(mapfile.read_text())
    if name not in ports:
        raise SystemExit(f"cluster_relay: {name} has no container in {mapfile}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import relay

    sys.argv = [sys.argv[0], "127.0.0.1", str(ports[name])]
    relay.main()


if __name__ == "__main__":
    main()
