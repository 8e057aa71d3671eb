"""The bad-input sweep: every command and every kind of bad input, run as a user runs the CLI.

Each case must exit non-zero with ONE line on stderr (or click's usage box for a usage
error), never a traceback, never the planted secret, and within a bounded time (a FIFO
given as a file must be refused, not opened and waited on). Nothing here boots a host or
reaches beyond loopback: the lock URL by default is a closed loopback port, and the one
server is a loopback http.server that answers every request with a 404 HTML page.
"""

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from runner_ctl._proc import run_unchecked
from runner_ctl.clikit import print_error, progress_line
from runner_ctl.errors import ToolMissingError, ToolTimeoutError
from runner_ctl.wheelhouse import build_wheelhouse
from tests.conftest import PROJECT_ROOT, runner_ctl
from tests.lockfixtures import LockService, free_port, lock_service
from tests.standins.loopback import serve_loopback

__all__ = ["lock_service"]  # a fixture, imported to be found

# Planted everywhere a secret can come from; no output may ever contain it.
SECRET = "pLaNtEdSeCrEt" + secrets.token_hex(10)
# The checkout's own HEAD: deploy resolves --commit in --repo-dir before it asks the service.
COMMIT = subprocess.run(
    ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=30
).stdout.strip()
CASE_TIMEOUT_S = 20.0
# The one kind of non-UTF-8 text: a lone 0xff byte, as os.fsdecode passes it through argv.
NOT_UTF8 = os.fsdecode(b"\xff")


AT_HTML404 = {"RUNNER_CTL_LOCK_URL": "{html404}"}


@dataclass(frozen=True)
class Case:
    """``args`` and ``env`` values may name the fixture files: {fifo}, {not_utf8}, {corrupt_cache} ..."""

    id: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    code: int | None = 2  # None: any non-zero exit


def deploy(*flags: str) -> tuple[str, ...]:
    return ("deploy", "--env", "prod", "--commit", COMMIT, *flags, "--", "true")


def report(*flags: str) -> tuple[str, ...]:
    return ("latency", "report", "--github", "octo/repo", "--format", "json", *flags)


def jsonl_report(*flags: str) -> tuple[str, ...]:
    return ("latency", "report", "--from-jsonl", "{trace}", "--format", "json", *flags)


def bump(*args: str) -> tuple[str, ...]:
    return ("tools", "bump", "tofu", *args, "--lockfile", "{lockfile}", "--release-url", "{closed_url}")


def serve(*flags: str) -> tuple[str, ...]:
    return ("lock", "serve", "--db", "{tmp}/lock.db", *flags)


CASES = [
    # ---- rehearse (never gets as far as a host) ----
    Case("rehearse-deploy-fifo", ("rehearse", "--deploy", "{fifo}")),
    Case("rehearse-deploy-not-utf8", ("rehearse", "--deploy", "{not_utf8}")),
    Case("rehearse-deploy-empty", ("rehearse", "--deploy", "")),
    # ---- testhost ----
    Case("testhost-up-name-newline", ("testhost", "up", "--name", "a\nb")),
    Case("testhost-up-name-empty", ("testhost", "up", "--name", "")),
    Case("testhost-up-volume-huge", ("testhost", "up", "--name", "zz1", "--volume-mb", str(10**20))),
    Case("testhost-up-corrupt-state", ("testhost", "up", "--name", "zz1"), {"RUNNER_CTL_CACHE_DIR": "{corrupt_cache}"}),
    Case("testhost-list-corrupt-state", ("testhost", "list"), {"RUNNER_CTL_CACHE_DIR": "{corrupt_cache}"}),
    Case("testhost-list-json-corrupt", ("testhost", "list", "--json"), {"RUNNER_CTL_CACHE_DIR": "{corrupt_cache}"}),
    Case("testhost-list-not-utf8", ("testhost", "list"), {"RUNNER_CTL_CACHE_DIR": "{not_utf8_cache}"}),
    Case("testhost-list-wrong-types", ("testhost", "list"), {"RUNNER_CTL_CACHE_DIR": "{typed_cache}"}),
    Case("testhost-ssh-corrupt-state", ("testhost", "ssh", "bad"), {"RUNNER_CTL_CACHE_DIR": "{corrupt_cache}"}),
    Case("testhost-ssh-name-newline", ("testhost", "ssh", "a\nb")),
    Case("testhost-ssh-name-traversal", ("testhost", "ssh", "../../etc")),
    Case("testhost-ssh-name-empty", ("testhost", "ssh", "")),
    Case("testhost-down-name-empty", ("testhost", "down", "")),
    # ---- deploy ----
    Case("deploy-env-newline", ("deploy", "--env", "a\nb", "--commit", COMMIT, "--", "true")),
    Case("deploy-env-trailing-newline", ("deploy", "--env", "prod\n", "--commit", COMMIT, "--", "true")),
    Case("deploy-env-empty", ("deploy", "--env", "", "--commit", COMMIT, "--", "true")),
    Case("deploy-commit-empty", ("deploy", "--env", "prod", "--commit", "", "--", "true")),
    Case("deploy-commit-newline", ("deploy", "--env", "prod", "--commit", "a\nb", "--", "true")),
    Case("deploy-wait-timeout-nan", deploy("--wait-timeout", "nan")),
    Case("deploy-wait-timeout-inf", deploy("--wait-timeout", "inf")),
    Case("deploy-wait-timeout-huge", deploy("--wait-timeout", "1e300")),
    Case("deploy-lease-ttl-nan", deploy("--lease-ttl", "nan")),
    Case("deploy-lock-url-empty", deploy("--lock-url", "")),
    Case("deploy-lock-url-malformed", deploy("--lock-url", "http://[::1")),
    Case("deploy-lock-url-no-host", deploy("--lock-url", "http://")),
    Case("deploy-lock-url-scheme", deploy("--lock-url", "ftp://127.0.0.1")),
    Case("deploy-lock-url-credentials", deploy("--lock-url", f"http://ops:{SECRET}@127.0.0.1:7465")),
    Case("deploy-lock-url-malformed-credentials", deploy("--lock-url", f"http://ops:{SECRET}@[::1")),
    Case("deploy-lock-url-env-malformed", deploy(), {"RUNNER_CTL_LOCK_URL": "http://[::1"}),
    Case("deploy-via-ssh-empty", deploy("--via-ssh", "")),
    Case("deploy-via-ssh-option", deploy("--via-ssh", "-oProxyCommand=true")),
    Case("deploy-retry-seconds-nan", deploy(), {"RUNNER_CTL_LOCK_RETRY_SECONDS": "nan"}),
    Case("deploy-token-file-fifo", deploy("--token-file", "{fifo}"), code=None),
    Case("deploy-token-file-not-utf8", deploy("--token-file", "{not_utf8}"), code=None),
    # A listening server: the token reaches a header only once a connection is made.
    Case(
        "deploy-token-newline",
        deploy(),
        {"RUNNER_CTL_LOCK_TOKEN": SECRET + "\n", **AT_HTML404},
        code=None,
    ),
    Case(
        "deploy-token-non-ascii",
        deploy(),
        {"RUNNER_CTL_LOCK_TOKEN": "é" + SECRET, **AT_HTML404},
        code=None,
    ),
    Case("deploy-lock-url-404-html", deploy("--lock-url", "{html404}"), code=None),
    # ---- deploy history ----
    Case("history-env-newline", ("deploy", "history", "--env", "a\nb")),
    Case("history-env-empty", ("deploy", "history", "--env", "")),
    Case("history-limit-huge", ("deploy", "history", "--env", "prod", "--limit", str(10**20))),
    Case("history-lock-url-empty", ("deploy", "history", "--env", "prod", "--lock-url", "")),
    Case("history-lock-url-malformed", ("deploy", "history", "--env", "prod", "--lock-url", "http://[::1")),
    Case(
        "history-token-file-fifo",
        ("deploy", "history", "--env", "prod", "--token-file", "{fifo}"),
        code=None,
    ),
    Case(
        "history-lock-url-404-html",
        ("deploy", "history", "--env", "prod", "--lock-url", "{html404}"),
        code=None,
    ),
    # ---- lock status / release ----
    Case("status-env-empty", ("lock", "status", "--env", "")),
    Case("status-env-newline", ("lock", "status", "--env", "a\nb")),
    Case("status-lock-url-empty", ("lock", "status", "--lock-url", "")),
    Case("status-lock-url-malformed", ("lock", "status", "--lock-url", "http://[::1")),
    Case("status-lock-url-env-malformed", ("lock", "status"), {"RUNNER_CTL_LOCK_URL": "http://[::1"}),
    Case(
        "status-token-newline",
        ("lock", "status"),
        {"RUNNER_CTL_LOCK_TOKEN": SECRET + "\n", **AT_HTML404},
    ),
    Case(
        "status-token-non-ascii",
        ("lock", "status"),
        {"RUNNER_CTL_LOCK_TOKEN": "é" + SECRET, **AT_HTML404},
    ),
    Case(
        "status-proxy-malformed",
        ("lock", "status"),
        {"HTTPS_PROXY": f"http://u:{SECRET}@[::1", "HTTP_PROXY": "http://[::1"},
        code=None,
    ),
    Case("status-lock-url-404-html", ("lock", "status", "--lock-url", "{html404}"), code=None),
    Case("release-env-newline", ("lock", "release", "--env", "a\nb", "--reason", "stuck")),
    Case("release-reason-empty", ("lock", "release", "--env", "prod", "--reason", "")),
    Case(
        "release-lock-url-malformed", ("lock", "release", "--env", "prod", "--reason", "x", "--lock-url", "http://[::1")
    ),
    # ---- lock serve (every case is invalid: a valid one would serve forever) ----
    Case("serve-token-file-fifo", serve("--token-file", "{fifo}"), code=None),
    Case("serve-token-file-not-utf8", serve("--token-file", "{not_utf8}"), code=None),
    Case("serve-token-file-swapped", serve("--token-file", "{swapped_tokens}"), code=None),
    Case(
        "serve-listen-not-utf8",
        serve("--token-file", "{tokens}", "--listen", f"{NOT_UTF8}:7465"),
        code=None,
    ),
    Case("serve-listen-empty", serve("--token-file", "{tokens}", "--listen", "")),
    Case("serve-listen-port-huge", serve("--token-file", "{tokens}", "--listen", f"127.0.0.1:{10**20}")),
    # ---- lock export / import ----
    Case("export-db-missing", ("lock", "export", "--db", "{tmp}/no-such.db", "--output", "{tmp}/export.json")),
    Case("export-db-not-a-database", ("lock", "export", "--db", "{tokens}", "--output", "{tmp}/export.json")),
    Case("import-fifo", ("lock", "import", "--db", "{tmp}/imported.db", "{fifo}")),
    Case("import-not-utf8", ("lock", "import", "--db", "{tmp}/imported.db", "{not_utf8}")),
    Case("import-not-json", ("lock", "import", "--db", "{tmp}/imported.db", "{tokens}")),
    Case("import-directory", ("lock", "import", "--db", "{tmp}/imported.db", "{tmp}")),
    # ---- latency report ----
    Case("latency-since-calendar-end", report("--since", "9999-12-31T23:59:59-14:00")),
    Case("latency-since-calendar-start", report("--since", "0001-01-01T00:00:00+14:00")),
    Case("latency-since-huge-duration", report("--since", "100000000000d")),
    Case("latency-until-huge-duration", report("--until", "100000000000w")),
    Case("latency-since-empty", report("--since", "")),
    Case("latency-until-empty", report("--until", "")),
    Case("latency-slots-huge", jsonl_report("--slots", str(10**20))),
    Case("latency-max-slots-huge", jsonl_report("--max-slots", str(10**20))),
    Case("latency-target-p95-inf", jsonl_report("--target-p95", "inf")),
    Case("latency-target-p95-nan", jsonl_report("--target-p95", "nan")),
    Case("latency-workflow-empty", jsonl_report("--workflow", "")),
    Case("latency-branch-newline", jsonl_report("--branch", "main\n")),
    Case("latency-api-url-malformed", report("--api-url", "http://[::1")),
    Case("latency-api-url-empty", report("--api-url", "")),
    Case("latency-api-url-scheme", report("--api-url", "ftp://127.0.0.1")),
    Case("latency-api-url-credentials", report("--api-url", f"https://x:{SECRET}@api.github.com")),
    Case("latency-api-url-query", report("--api-url", f"https://gitlab.example/api/v4?private_token={SECRET}")),
    Case("latency-api-url-404-html", report("--api-url", "{html404}")),
    Case("latency-github-token-non-ascii", report(), {"GITHUB_TOKEN": "é" + SECRET}),
    Case("latency-github-token-inner-newline", report(), {"GITHUB_TOKEN": SECRET + "\nX-Evil: 1"}),
    Case("latency-gitlab-token-non-ascii", ("latency", "report", "--gitlab", "g/p"), {"GITLAB_TOKEN": "é" + SECRET}),
    Case("latency-token-env-empty", report("--token-env", "")),
    Case("latency-proxy-malformed", report(), {"HTTPS_PROXY": f"http://u:{SECRET}@[::1", "HTTP_PROXY": "http://[::1"}),
    Case("latency-github-trailing-newline", ("latency", "report", "--github", "octo/repo\n")),
    Case("latency-gitlab-empty", ("latency", "report", "--gitlab", "")),
    Case("latency-from-jsonl-fifo", ("latency", "report", "--from-jsonl", "{fifo}")),
    Case("latency-from-jsonl-device", ("latency", "report", "--from-jsonl", "/dev/zero")),
    Case("latency-from-jsonl-not-utf8", ("latency", "report", "--from-jsonl", "{not_utf8}")),
    Case("latency-export-jsonl-fifo", jsonl_report("--export-jsonl", "{fifo}")),
    Case("latency-step-summary-fifo", jsonl_report("--format", "markdown"), {"GITHUB_STEP_SUMMARY": "{fifo}"}),
    Case("latency-chart-fifo", jsonl_report("--chart", "{fifo_png}")),
    Case("latency-write-tfvars-fifo", report("--write-tfvars", "{fifo}", "--slots-per-host", "2")),
    Case("latency-write-tfvars-device", report("--write-tfvars", "/dev/zero", "--slots-per-host", "2")),
    Case("latency-write-tfvars-not-utf8", report("--write-tfvars", "{not_utf8}", "--slots-per-host", "2")),
    Case("latency-write-tfvars-no-dir", report("--write-tfvars", "{tmp}/no/such/t.json", "--slots-per-host", "2")),
    # ---- tools bump ----
    Case("bump-version-trailing-newline", bump("1.2.3\n")),
    Case("bump-version-newline", bump("1.2\n3")),
    Case("bump-version-empty", bump("")),
    Case("bump-release-url-malformed", ("tools", "bump", "tofu", "1.2.3", "--release-url", "http://[::1")),
    Case("bump-release-url-empty", ("tools", "bump", "tofu", "1.2.3", "--release-url", "")),
    Case("bump-release-url-scheme", ("tools", "bump", "tofu", "1.2.3", "--release-url", "file:///etc")),
    Case("bump-gpg-key-url-malformed", bump("1.2.3", "--gpg-key-url", "http://[::1")),
    Case(
        "bump-release-url-credentials",
        ("tools", "bump", "tofu", "1.2.3", "--release-url", f"https://{SECRET}@x.example"),
    ),
    Case("bump-lockfile-fifo", ("tools", "bump", "tofu", "1.2.3", "--lockfile", "{fifo}")),
    Case("bump-lockfile-device", ("tools", "bump", "tofu", "1.2.3", "--lockfile", "/dev/null")),
    Case("bump-lockfile-not-utf8", ("tools", "bump", "tofu", "1.2.3", "--lockfile", "{not_utf8}")),
    Case("bump-lockfile-empty-path", ("tools", "bump", "tofu", "1.2.3", "--lockfile", "")),
    Case(
        "bump-proxy-malformed", bump("1.2.3"), {"HTTPS_PROXY": f"http://u:{SECRET}@[::1", "HTTP_PROXY": "http://[::1"}
    ),
    # ---- runners ----
    Case("runners-bad-subcommand", ("runners", "a\nb")),
    Case("runners-list-no-forge", ("runners", "list")),
    Case("runners-list-two-forges", ("runners", "list", "--github", "acme/app", "--gitlab", "acme/app")),
    Case("runners-list-repo-malformed", ("runners", "list", "--github", "acme app")),
    Case("runners-list-api-url-scheme", ("runners", "list", "--github", "acme/app", "--api-url", "ftp://127.0.0.1")),
    Case("runners-list-no-token", ("runners", "list", "--github", "acme/app"), {"GITHUB_TOKEN": ""}),
    Case("runners-prune-offline-for", ("runners", "prune", "--gitlab", "acme/app", "--offline-for", "5x")),
    Case("runners-prune-empty-prefix", ("runners", "prune", "--github-org", "acme", "--prefix", "")),
]


class _Html404(BaseHTTPRequestHandler):
    """Something that is not the service at all: every request gets a 404 HTML page."""

    def _answer(self) -> None:
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: object) -> None:
        pass


def _trace_line() -> str:
    return json.dumps(
        {
            "created_at": "2024-05-01T00:00:00Z",
            "started_at": "2024-05-01T00:00:10Z",
            "completed_at": "2024-05-01T00:01:00Z",
            "labels": ["self-hosted", "linux"],
            "runner_name": "ci-1",
            "workflow": "CI",
            "name": "build",
            "conclusion": "success",
            "run_id": 1,
        }
    )


def _host_state(root: Path, name: str, content: bytes) -> Path:
    directory = root / "testhost" / "hosts" / name
    directory.mkdir(parents=True)
    (directory / "host.json").write_bytes(content)
    return root


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("bad-input")
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    os.mkfifo(tmp / "fifo.png")
    (tmp / "not-utf8").write_bytes(b"\xff\xfe" + SECRET.encode() + b"\xff\n")
    tokens = tmp / "tokens"
    tokens.write_text(f"ci:{SECRET}\n")
    tokens.chmod(0o600)
    swapped = tmp / "swapped-tokens"
    swapped.write_text(f"{SECRET}:ci\n")
    swapped.chmod(0o600)
    (tmp / "trace.jsonl").write_text(_trace_line() + "\n")
    (tmp / "multitool.lock.json").write_text("{}\n")
    typed = {"name": 5, "address": ["x"], "pid": -1, "directory": 7}
    with serve_loopback(_Html404) as port:
        yield {
            "tmp": str(tmp),
            "fifo": str(fifo),
            "fifo_png": str(tmp / "fifo.png"),
            "not_utf8": str(tmp / "not-utf8"),
            "tokens": str(tokens),
            "swapped_tokens": str(swapped),
            "trace": str(tmp / "trace.jsonl"),
            "lockfile": str(tmp / "multitool.lock.json"),
            "corrupt_cache": str(_host_state(tmp / "corrupt", "bad", b"{not json")),
            "not_utf8_cache": str(_host_state(tmp / "not-utf8-state", "bad", b'{"name": "\xff"}')),
            "typed_cache": str(_host_state(tmp / "typed", "bad", json.dumps(typed).encode())),
            "html404": f"http://127.0.0.1:{port}",
            "closed_url": f"http://127.0.0.1:{free_port()}",
        }


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


def _is_usage_box(stderr: str) -> bool:
    """click's usage error, as typer renders it: the usage line, then a boxed 'Error'."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and lines[0].lstrip().startswith("Usage:") and any("Error" in line for line in lines)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input(case: Case, places: dict[str, str]) -> None:
    env = {
        **os.environ,
        "RUNNER_CTL_CACHE_DIR": str(Path(places["tmp"]) / "cache"),
        "RUNNER_CTL_LOCK_URL": places["closed_url"],
        "RUNNER_CTL_LOCK_TOKEN": SECRET,
        "RUNNER_CTL_LOCK_RETRY_SECONDS": "0",
        "GITHUB_TOKEN": SECRET,
        "GITLAB_TOKEN": SECRET,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.update({key: _fill(value, places) for key, value in case.env.items()})
    args = [_fill(arg, places) for arg in case.args]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runner_ctl", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CASE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"runner-ctl {' '.join(map(repr, args))} hung for {CASE_TIMEOUT_S:.0f} s")
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    shown = f"exit {done.returncode}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}"
    assert "Traceback" not in stderr + stdout, shown
    assert SECRET not in stderr + stdout, shown
    assert done.returncode != 0, shown
    if case.code is not None:
        assert done.returncode == case.code, shown
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or _is_usage_box(stderr), shown


# ---- beyond the sweep: what the one-line mechanism prints, and what a corrupt state file may touch ----


def test_error_and_progress_lines_print_user_text_literally(capsys: pytest.CaptureFixture[str]) -> None:
    # rich would turn ':secret:' into an emoji and '[bold]' into a style: a token file line
    # 'name:secret:admin' in a message must come out as written.
    text = "token file line name:secret:admin, reason [bold]x[/bold] :thumbs_up:"
    print_error(text)
    progress_line("runner-ctl deploy:", text)
    assert capsys.readouterr().err.splitlines() == [f"runner-ctl: error: {text}", f"runner-ctl deploy: {text}"]


def test_an_emoji_code_in_an_error_reaches_the_terminal_as_typed() -> None:
    done = runner_ctl("testhost", "ssh", "x:secret:y", timeout=CASE_TIMEOUT_S)
    assert done.returncode == 2
    assert "'x:secret:y'" in done.stderr, done.stderr


def test_history_shows_a_reason_with_markup_as_typed(lock_service: LockService) -> None:
    reason = "[bold]hotfix[/bold] for name:secret:admin"
    env = {**lock_service.env(), "COLUMNS": "400", "RUNNER_CTL_CACHE_DIR": str(lock_service.directory / "cache")}
    deployed = runner_ctl("deploy", "--env", "prod", "--commit", COMMIT, "--reason", reason, "--", "true", env=env)
    assert deployed.returncode == 0, deployed.stderr
    shown = runner_ctl("deploy", "history", "--env", "prod", env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert reason in shown.stdout, shown.stdout


def _state(home: Path, **fields: object) -> None:
    """A test host's state file in ``home``, as boot_host writes it, with ``fields`` changed."""
    host = {
        "name": home.name,
        "address": "10.213.0.2",
        "controller_address": "10.213.0.1",
        "slot": 0,
        "netns": f"runner-ctl-{home.name}",
        "veth": f"rct-{home.name}",
        "directory": str(home),
        "ssh_config": str(home / "ssh_config"),
        "ssh_key": str(home / "id_ed25519"),
        "known_hosts": str(home / "known_hosts"),
        "apt_repo": "/nonexistent",
    }
    home.mkdir(parents=True)
    (home / "host.json").write_text(json.dumps({**host, **fields}))


def test_a_corrupt_state_file_is_one_line_and_down_removes_only_its_own_directory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    hosts = cache / "testhost" / "hosts"
    # Damaged so that it names another directory: teardown must never remove that one.
    _state(hosts / "bad", directory=str(victim))
    _state(hosts / "good")
    env = {"RUNNER_CTL_CACHE_DIR": str(cache)}
    listed = runner_ctl("testhost", "list", env=env, timeout=60)
    assert listed.returncode == 2
    lines = listed.stderr.strip().splitlines()
    assert len(lines) == 1, listed.stderr
    assert str(hosts / "bad" / "host.json") in lines[0]
    assert "runner-ctl testhost down bad" in lines[0]

    down = runner_ctl("testhost", "down", "--all", env=env, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not (hosts / "bad").exists()
    assert not (hosts / "good").exists()
    assert (victim / "keep").read_text() == "mine"


def test_a_state_file_never_makes_teardown_signal_every_process(tmp_path: Path) -> None:
    # kill(-1, SIGTERM) as root signals every process on the machine; the state is refused.
    _state(tmp_path / "testhost" / "hosts" / "rh9", pid=-1, pid_start_time=None)
    done = runner_ctl("testhost", "list", "--json", env={"RUNNER_CTL_CACHE_DIR": str(tmp_path)}, timeout=60)
    assert done.returncode == 2
    assert "pid" in done.stderr and "corrupt" in done.stderr, done.stderr


def test_testhost_ssh_without_ssh_installed_is_one_line(tmp_path: Path) -> None:
    _state(tmp_path / "testhost" / "hosts" / "rh9")
    (tmp_path / "empty-bin").mkdir()
    done = runner_ctl(
        "testhost", "ssh", "rh9", env={"RUNNER_CTL_CACHE_DIR": str(tmp_path), "PATH": str(tmp_path / "empty-bin")}
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "runner-ctl: error: cannot run ssh (No such file or directory); install it: apt-get install openssh-client"
    ], done.stderr


def test_a_tool_that_is_missing_or_hangs_is_a_typed_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ToolMissingError, match="is not installed"):
        run_unchecked([str(tmp_path / "no-such-tool")], what="running a tool", timeout=10)
    with pytest.raises(ToolTimeoutError, match="did not finish within 0 s"):
        run_unchecked(["sleep", "30"], what="running sleep", timeout=0.2)


def test_pip_missing_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The wheelhouse runs pip with this interpreter; an interpreter that is gone must not be a traceback.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python-gone"))
    monkeypatch.setenv("RUNNER_CTL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ToolMissingError, match="building the runner-ctl wheel failed"):
        build_wheelhouse(PROJECT_ROOT, "x86_64")


@pytest.mark.parametrize("name", ["fifo", "not_utf8", "tmp"])
def test_bin_tofu_refuses_a_lockfile_it_cannot_read_in_one_line(places: dict[str, str], name: str) -> None:
    # bin/tofu runs src/runner_ctl/tools.py with the system python3 on its first run.
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "src" / "runner_ctl" / "tools.py"), "fetch", "--lockfile", places[name],
         "tofu"],
        capture_output=True, text=True, timeout=CASE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert places[name] in done.stderr
    assert SECRET not in done.stderr  # the non-UTF-8 file holds it


class _OddGitHub(BaseHTTPRequestHandler):
    """Speaks GitHub's runs list, but with a created_at that is no date-time at all."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"total_count": 1, "workflow_runs": [{"id": 1, "status": "completed", "created_at": "yesterday-ish"}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_forge_answer_with_a_bad_time_is_one_line(tmp_path: Path) -> None:
    with serve_loopback(_OddGitHub) as port:
        done = runner_ctl(
            "latency", "report", "--github", "octo/repo", "--since", "1d", "--api-url", f"http://127.0.0.1:{port}",
            "--format", "json", env={"GITHUB_TOKEN": SECRET, "RUNNER_CTL_CACHE_DIR": str(tmp_path)},
            timeout=CASE_TIMEOUT_S,
        )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unexpected payload" in lines[0] and "created_at" in lines[0], done.stderr
    assert SECRET not in done.stderr + done.stdout
