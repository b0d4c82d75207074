from typer.testing import CliRunner

from connector import cli


def test_demo_and_sandbox_say_how_to_install_the_sandbox_extra_when_it_is_missing(monkeypatch):
    monkeypatch.setattr(cli, "SANDBOX_PACKAGES", ("trustme", "no_such_package_cpq2stripe"))

    for command in ("demo", "sandbox"):
        result = CliRunner().invoke(cli.app, [command])

        assert result.exit_code == cli.EXIT_CONFIG
        assert "no_such_package_cpq2stripe" in result.output
        assert "pip install 'cpq2stripe[sandbox]'" in result.output
        assert "trustme," not in result.output  # only what is missing is named
