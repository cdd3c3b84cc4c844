from __future__ import annotations

import pytest

from dlenv import config
from dlenv.errors import ConfigError, StateFileError, UsageError


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    user = tmp_path / "user"
    project = tmp_path / "project" / "sub"
    user.mkdir()
    project.mkdir(parents=True)
    monkeypatch.setenv("DLENV_CONFIG_DIR", str(user))
    monkeypatch.chdir(project)
    return user, project.parent


def test_precedence_defaults_user_project_env_flags(dirs):
    user, project = dirs
    assert config.load({}, env={}).instance == "g4dn.xlarge"
    (user / "dlenv.toml").write_text('instance = "g5.xlarge"\ndisk = 150\nspot = true\n')
    s = config.load({}, env={})
    assert (s.instance, s.disk, s.spot) == ("g5.xlarge", 150, True)
    (project / "dlenv.toml").write_text('[dlenv]\ninstance = "g6.xlarge"\n')
    s = config.load({}, env={})
    assert (s.instance, s.disk) == ("g6.xlarge", 150)
    s = config.load(
        {},
        env={
            "DLENV_INSTANCE": "g6e.xlarge",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_REGION": "us-west-2",
            "AWS_PROFILE": "work",
        },
    )
    assert (s.instance, s.region, s.profile) == ("g6e.xlarge", "us-west-2", "work")
    s = config.load(
        {"instance": "p5.48xlarge", "region": None}, env={"DLENV_INSTANCE": "g6e.xlarge"}
    )
    assert s.instance == "p5.48xlarge" and s.sources["instance"] == "--instance"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("disk = 'big'", "is not an integer"),
        ("spot = 'maybe'", "is not true/false"),
        ("colour = 'red'", "unknown setting"),
        ("python = 'pipenv'", "is not conda or uv"),
        ("idle_stop = -5", "cannot be negative"),
        ("[[broken", "cannot read"),
    ],
)
def test_bad_config_is_a_usage_error(dirs, text, message):
    user, _ = dirs
    (user / "dlenv.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load({}, env={})
    assert message in err.value.message and err.value.exit_code == 2


# -- project config is untrusted until `dlenv config trust` -------------------------------------
RISKY = 'ssh_proxy_command = "touch /tmp/owned"\nallow_cidr = "0.0.0.0/0"\ninstance = "g5.xlarge"\n'


def test_untrusted_project_file_sets_preferences_only(dirs):
    _, project = dirs
    (project / "dlenv.toml").write_text(RISKY + 'ami = "ami-0123456789abcdef0"\n')
    s = config.load({}, env={})
    assert s.instance == "g5.xlarge" and s.sources["instance"] == str(project / "dlenv.toml")
    assert (s.ssh_proxy_command, s.allow_cidr, s.ami) == (None, None, "ubuntu-24.04")
    [notice] = s.notices
    assert notice == (
        f"notice: ignoring ssh_proxy_command, allow_cidr, ami from {project / 'dlenv.toml'} "
        f"(untrusted project config); trust it with: dlenv config trust "
        f"{project / 'dlenv.toml'}"
    )


def test_named_distro_needs_no_trust_but_an_image_id_does():
    assert config.needs_trust("ami", "ubuntu-22.04") is None
    assert "backdoored" in config.needs_trust("ami", "ami-0123456789abcdef0")
    assert config.needs_trust("instance", "p5.48xlarge") is None
    assert set(config.NEEDS_TRUST) >= {"ssh_proxy_command", "allow_cidr", "ip_check_url"}


def test_trust_applies_until_the_file_changes(dirs):
    _, project = dirs
    path = project / "dlenv.toml"
    path.write_text(RISKY)
    where, digest, changed = config.trust(path)
    assert changed and where == path.resolve() and len(digest) == 64
    assert config.trust(path)[2] is False  # the same content again changes nothing
    s = config.load({}, env={})
    assert (s.ssh_proxy_command, s.allow_cidr, s.notices) == ("touch /tmp/owned", "0.0.0.0/0", [])
    assert oct(config.trust_store_path().stat().st_mode)[-3:] == "600"

    path.write_text(RISKY + "disk = 200\n")
    s = config.load({}, env={})
    assert s.ssh_proxy_command is None and s.disk == 200
    assert "(changed since you trusted it)" in s.notices[0]
    assert [f.trust for f in config.describe_files()] == ["changed"]

    config.trust(path)
    assert config.load({}, env={}).ssh_proxy_command == "touch /tmp/owned"
    assert config.untrust(path) is True and config.untrust(path) is False
    assert config.load({}, env={}).ssh_proxy_command is None


def test_user_config_env_and_flags_are_trusted(dirs):
    user, _ = dirs
    (user / "dlenv.toml").write_text('ssh_proxy_command = "nc %h %p"\n')
    s = config.load({"allow_cidr": "10.0.0.0/8"}, env={"DLENV_IP_CHECK_URL": "https://x.test/ip"})
    assert (s.ssh_proxy_command, s.allow_cidr, s.ip_check_url, s.notices) == (
        "nc %h %p",
        "10.0.0.0/8",
        "https://x.test/ip",
        [],
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("hosts", "", "is not a dlenv.toml"),
        ("dlenv.toml", None, "does not exist"),
        ("dlenv.toml", "[[broken", "cannot read"),
    ],
)
def test_trust_refuses_what_it_cannot_vouch_for(dirs, name, text, message):
    _, project = dirs
    path = project / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError) as err:
        config.trust(path)
    assert message in err.value.message
    assert not config.trust_store_path().exists()


def test_trusting_the_user_config_is_refused(dirs):
    user, _ = dirs
    (user / "dlenv.toml").write_text("")
    with pytest.raises(UsageError, match="always trusted"):
        config.trust(user / "dlenv.toml")


def test_corrupt_trust_store_is_one_line(dirs):
    _, project = dirs
    (project / "dlenv.toml").write_text(RISKY)
    config.trust_store_path().write_text('{"files": {"/x": "not a hash"}}')
    with pytest.raises(StateFileError, match=r"trusted project list .* is corrupt"):
        config.load({}, env={})
    (project / "dlenv.toml").write_text('instance = "g5.xlarge"\n')  # nothing risky: not read
    assert config.load({}, env={}).instance == "g5.xlarge"


# -- values that reach AWS, files or a shell ----------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"region": "us-east-1;x"}, {}, "--region 'us-east-1;x' is not an AWS region name"),
        ({"region": "us-east-1\n"}, {}, "is not an AWS region name"),
        ({}, {"AWS_REGION": "EU"}, "AWS_REGION: region = 'EU' is not an AWS region name"),
        ({"profile": "a b"}, {}, "is not a valid AWS profile name"),
        ({"instance": "g4dn.xlarge;rm"}, {}, "is not an instance type"),
        ({"instance": "g4dn.xlarge\n"}, {}, "is not an instance type"),
        ({"ami": "../etc"}, {}, "is not an image spec"),
        ({"ami": "ami-12345678\n"}, {}, "is not an image spec"),
        ({"ssh_user": "a\nProxyCommand x"}, {}, "is not a valid login name"),
        ({"ssh_user": "-oProxyCommand=x"}, {}, "is not a valid login name"),
        ({"ssh_proxy_command": "nc %h %p\nProxyCommand x"}, {}, "contains a control character"),
        ({"ip_check_url": "file:///etc/passwd"}, {}, "is not an http(s) URL"),
        ({"idle_stop": 999999}, {}, "more than a week"),
        ({"ssh_timeout": 0}, {}, "out of range"),
        ({"disk": -1}, {}, "out of range"),
        ({}, {"DLENV_PYTHON": "pip"}, "DLENV_PYTHON: python = 'pip' is not conda or uv"),
    ],
)
def test_bad_values_are_refused_whatever_their_source(dirs, flags, env, message):
    with pytest.raises(ConfigError) as err:
        config.load(flags, env=env)
    assert message in err.value.message and err.value.exit_code == 2


@pytest.mark.parametrize(
    ("flags", "attr", "value"),
    [
        ({"region": "us-gov-west-1"}, "region", "us-gov-west-1"),
        ({"region": "ap-southeast-2"}, "region", "ap-southeast-2"),
        ({"profile": "work.admin@corp"}, "profile", "work.admin@corp"),
        ({"instance": "p5e.48xlarge"}, "instance", "p5e.48xlarge"),
        ({"ami": "ami-0123456789abcdef0"}, "ami", "ami-0123456789abcdef0"),
        ({"ami": "debian-12"}, "ami", "debian-12"),
        ({"ssh_user": "ec2-user"}, "ssh_user", "ec2-user"),
    ],
)
def test_good_values_pass(dirs, flags, attr, value):
    assert getattr(config.load(flags, env={}), attr) == value


def test_toml_types_are_not_silently_converted(dirs):
    user, _ = dirs
    for text, message in (
        ("disk = 100.7", "is not an integer"),
        ('instance = ["g5.xlarge"]', "is not a string"),
        ("ami = 12", "is not a string"),
    ):
        (user / "dlenv.toml").write_text(text)
        with pytest.raises(ConfigError, match=message):
            config.load({}, env={})


def test_tag_values_are_checked_like_any_other_source():
    with pytest.raises(ConfigError, match="tag dlenv:python: python = 'pip;x' is not conda or uv"):
        config.coerce("python", "pip;x", "tag dlenv:python")


# -- global flags and notices in the CLI's App ----------------------------------------------------
def test_app_command_flag_wins_and_unset_ones_never_hide_the_global(dirs, capsys):
    from dlenv.cli._app import App

    app = App(global_flags={"region": "eu-west-1", "profile": "outer"})
    assert app.settings(region=None, profile=None).region == "eu-west-1"
    s = app.settings(region="us-west-2", profile=None)
    assert (s.region, s.profile, s.sources["region"]) == ("us-west-2", "outer", "--region")


def test_app_prints_each_notice_once(dirs, capsys):
    from dlenv.cli._app import App

    _, project = dirs
    (project / "dlenv.toml").write_text(RISKY)
    app = App(global_flags={})
    app.settings()
    app.settings()
    err = capsys.readouterr().err
    assert err.count("notice: ignoring ssh_proxy_command, allow_cidr from") == 1


# -- the CIDR SSH is opened to ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.1.2.3/8", "has host bits set: did you mean 10.0.0.0/8 or 10.1.2.3/32?"),
        ("2001:db8::5/64", "did you mean 2001:db8::/64 or 2001:db8::5/128?"),
        ("10.0.0.300/32", "is not a valid CIDR"),
        ("", "is not a valid CIDR"),
    ],
)
def test_cidr_host_bits_are_an_error_not_a_widening(text, message):
    from dlenv.cloud.network import normalize_cidr

    with pytest.raises(UsageError) as err:
        normalize_cidr(text)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("cidr", "warned"),
    [
        ("203.0.113.7/32", None),
        ("10.0.0.0/8", None),
        ("2001:db8::/32", None),
        ("0.0.0.0/0", "the whole internet (0.0.0.0/0)"),
        ("::/0", "the whole internet (::/0)"),
        ("64.0.0.0/2", "1,073,741,824 addresses"),
        ("2000::/3", "a large part of the internet"),
    ],
)
def test_wide_cidrs_warn_from_the_one_resolver(cidr, warned):
    from dlenv.cloud.network import resolve_ssh_cidr

    said: list[str] = []
    assert resolve_ssh_cidr(cidr, "unused", said.append, origin="DLENV_ALLOW_CIDR") == cidr
    if warned is None:
        assert said == []
    else:
        assert len(said) == 1 and warned in said[0] and "SSH (port 22)" in said[0]


def test_cidr_error_names_a_config_file_source():
    from dlenv.cloud.network import normalize_cidr

    with pytest.raises(UsageError, match=r"allow_cidr \(from /u/dlenv.toml\) '10.1.2.3/8'"):
        normalize_cidr("10.1.2.3/8", "/u/dlenv.toml")
