"""The reference pages of the docs site are what the code says now (python -m runner_ctl.refdocs)."""

from pathlib import Path
from typing import Any

import pytest
import typer.main

from runner_ctl.cli import app
from runner_ctl.clikit import exit_codes_epilog, parse_exit_codes
from runner_ctl.layers import SPECS
from runner_ctl.refdocs import PAGES, render_pages
from runner_ctl.refdocs.__main__ import main as refdocs_main
from runner_ctl.refdocs._groupdata import key_table

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return render_pages()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_committed_page_is_what_the_generator_writes_now(name: str, pages: dict[str, str]) -> None:
    committed = (REFERENCE / name).read_text()
    assert committed == pages[name], f"docs/reference/{name} is stale: run python -m runner_ctl.refdocs"


def _commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((" ".join(path), command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk(["runner-ctl"], typer.main.get_command(app))
    return found


def test_every_command_and_option_is_on_the_cli_page(pages: dict[str, str]) -> None:
    page = pages["cli.md"]
    for path, command in _commands():
        assert f"## {path} {{#{path.replace(' ', '-')}}}" in page
        for param in command.params:
            for option in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}`" in page, f"{path} {option}"


def test_every_command_that_runs_lists_its_exit_codes() -> None:
    for path, command in _commands():
        if getattr(command, "commands", None) and path != "runner-ctl deploy":
            continue  # a group only dispatches; `deploy` is a group that runs COMMAND itself
        codes = dict(parse_exit_codes(command.epilog))
        assert "0" in codes or "N" in codes, f"{path} has no exit codes in its epilog"


def test_exit_codes_read_back_as_written() -> None:
    codes = [("0", "done"), ("2", "bad flags, a bad token"), ("130", "interrupted (Ctrl-C or SIGTERM)")]
    assert parse_exit_codes(exit_codes_epilog(*codes)) == codes
    assert parse_exit_codes("Some other epilog.") == []
    with pytest.raises(ValueError, match="one word"):
        exit_codes_epilog(("2", "bad flags; bad token"))


def test_every_key_of_every_layer_is_on_the_group_data_page(pages: dict[str, str]) -> None:
    for name, spec in SPECS.items():
        assert f"## {name} {{#{name}}}" in pages["group-data.md"]
        for key in spec.settings.model_fields:
            assert f"| `{key}` |" in pages["group-data.md"], f"{name}: {key}"


def test_a_field_type_and_default_show_in_its_row() -> None:
    assert "| `swap_size_mb` | integer | `2048` |" in key_table(SPECS["base"])


def test_the_lock_api_page_comes_from_the_served_openapi_document(pages: dict[str, str]) -> None:
    import json

    document = json.loads(pages["openapi.json"])
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"### {method.upper()} {path}\n" in pages["lock-api.md"]


def test_check_mode_names_a_stale_page_and_writing_makes_it_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refdocs_main(["--check", str(tmp_path)]) == 1
    assert "out of date: cli.md" in capsys.readouterr().err
    assert refdocs_main([str(tmp_path)]) == 0
    assert refdocs_main(["--check", str(tmp_path)]) == 0
    (tmp_path / "metrics.md").write_text("edited by hand\n")
    assert refdocs_main(["--check", str(tmp_path)]) == 1
    assert "out of date: metrics.md" in capsys.readouterr().err


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert refdocs_main(["--nope"]) == 2
    assert refdocs_main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
