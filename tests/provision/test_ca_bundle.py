"""--ca-bundle on a host that does not trust the TLS-inspecting proxy in front of it.

This machine reaches package indexes through a proxy that re-signs TLS with CAs kept in
/usr/local/share/ca-certificates. The host image here has only Debian's stock CAs, exactly like
a fresh VM behind a corporate proxy: pip's first download must fail without --ca-bundle and
succeed with it (apt, pip and uv all trust the system store the step extends).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]
LOCAL_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


@pytest.mark.skipif(not LOCAL_CAS, reason="no extra (TLS-inspecting proxy) CA on this machine")
def test_ca_bundle_makes_a_proxied_host_work(host_pool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness import NO_EXTRA_CA_IMAGE

    host = host_pool(NO_EXTRA_CA_IMAGE)
    only = ("ca-bundle", "base-packages", "python-env")
    terminal = Terminal(interactive=False)
    [without] = provision([host.target()], ProvisionOptions(python="uv", only=only), terminal)
    if without.ok:
        pytest.skip("this machine's network does not re-sign TLS: nothing to prove here")
    assert without.failed_step == "python-env"
    assert "CERTIFICATE_VERIFY_FAILED" in without.log_path.read_text()

    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("".join(p.read_text() for p in LOCAL_CAS))
    [with_ca] = provision(
        [host.target()], ProvisionOptions(python="uv", only=only, ca_bundle=bundle), terminal
    )
    assert with_ca.ok, with_ca.error
    assert with_ca.applied == ["ca-bundle", "python-env"]
    res = host.exec("cat /etc/pip.conf; /opt/dlenv/bin/uv --version")
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in res.stdout and "uv " in res.stdout
