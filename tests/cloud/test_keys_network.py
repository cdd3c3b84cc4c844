from __future__ import annotations

import http.server
import stat
import threading

import pytest

from dlenv.cloud import keys, network
from dlenv.errors import SshError, UsageError

TAGS = [{"Key": "dlenv:name", "Value": "box"}]


def test_key_pair_generated_locally_0600_and_imported(aws):
    kp = keys.ensure_key_pair(aws, "box", TAGS)
    assert kp.created_in_ec2 and kp.name == "dlenv-box"
    assert stat.S_IMODE(kp.private_key.stat().st_mode) == 0o600
    assert kp.private_key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert keys.ec2_key_exists(aws, "dlenv-box")
    again = keys.ensure_key_pair(aws, "box", TAGS)
    assert not again.created_in_ec2 and again.private_key == kp.private_key


def test_missing_local_key_never_replaces_the_ec2_key(aws):
    kp = keys.ensure_key_pair(aws, "box", TAGS)
    kp.private_key.unlink()
    with pytest.raises(SshError) as err:
        keys.ensure_key_pair(aws, "box", TAGS)
    assert str(kp.private_key) in err.value.message and "dlenv down box" in err.value.hint
    assert keys.ec2_key_exists(aws, "dlenv-box")


def test_security_group_opens_only_ssh_from_one_cidr(aws):
    vpc = network.default_vpc(aws)
    gid, created = network.ensure_group(aws, "box", vpc, "198.51.100.7/32", TAGS)
    assert created
    perms = aws.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in perms] == [
        (22, 22, ["198.51.100.7/32"])
    ]
    gid2, created2 = network.ensure_group(aws, "box", vpc, "203.0.113.9/32", TAGS)
    perms = aws.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"]
    assert gid2 == gid and not created2
    assert [r["CidrIp"] for p in perms for r in p["IpRanges"]] == ["203.0.113.9/32"]


@pytest.mark.parametrize("bad", ["300.1.1.1/32", "10.0.0.0/99", "example.com", ""])
def test_bad_cidr(bad):
    with pytest.raises(UsageError, match="not a valid CIDR"):
        network.normalize_cidr(bad)


def test_caller_ip_detection(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"203.0.113.50\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert network.caller_cidr(f"http://127.0.0.1:{server.server_port}/") == "203.0.113.50/32"
    finally:
        server.shutdown()
    with pytest.raises(UsageError) as err:
        network.caller_cidr("http://127.0.0.1:9/", timeout=1)
    assert "--allow-cidr" in err.value.hint
