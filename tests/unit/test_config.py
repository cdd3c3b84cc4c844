from __future__ import annotations

import pytest

from dlenv import config
from dlenv.errors import ConfigError


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
