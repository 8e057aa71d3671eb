"""GitHub Actions runner layer: warm self-hosted runners, one systemd unit per slot.

For each registration in ``github_runner_registrations`` and each of its ``slots``:

+ the release ``actions-runner-linux-<arch>-<version>.tar.gz`` is downloaded on the operator's
  machine and checked against ``github_runner_sha256`` (a bad download never reaches the host),
  uploaded to ``/opt/actions-runner/.releases/`` and checked again there before it is
  extracted into ``/opt/actions-runner/<name>`` (owned by the runner user);
+ the slot is registered on the operator's orders: a registration token from the REST API
  (``POST .../actions/runners/registration-token``, with ``github_runner_token``) is written
  into a root-only file by ``layerkit.put_secret`` and handed to ``config.sh --unattended
  --url --name --labels --work --replace [--runnergroup]`` only as ``ACTIONS_RUNNER_INPUT_TOKEN``
  in its environment — never in an argument list or a log — and the file is removed;
+ its work directory is ``<data_dir>/actions-runner/<name>``: stable, so each slot keeps its
  checkout path and with it its Bazel output base and warm server;
+ a unit ``actions.runner.<scope>.<name>.service`` as ``svc.sh`` makes it (``KillMode=process``,
  ``User=<runner_user>``), plus ``Restart=on-failure``; enabled and running.

A slot already configured for the same URL and name, and known to the API under the same
id, is not registered again. Changed labels go through ``PUT .../actions/runners/{id}/labels``.
A changed version is extracted over the slot while its runner is idle (a busy one is left for
the next deploy, which says so). ``present: False`` — and a slot under
``/opt/actions-runner`` with the name prefix that no registration wants any more — is
deregistered (a remove token, then ``config.sh remove``) and its unit and files removed.

Every API call that decides something is made before any operation is queued, so a bad
token (401), a missing permission (403) or an unknown scope (404) stops the deploy in one
line with the host untouched.

Group data keys (defaults and documentation in ``runner_ctl.layers.github_runner``):

+ github_runner_registrations: scope, runner_group, slots, labels, present, name, token
+ github_runner_token: secret reference of a PAT or GitHub App installation token
+ github_runner_api_url: https://api.github.com or a GitHub Enterprise Server's /api/v3
+ github_runner_version / github_runner_sha256 / github_runner_arch / github_runner_download_url
+ github_runner_name_prefix: the start of every runner name (``runners prune`` trusts it)

Example:

.. code:: python

    from deploys.github_runner import github_runner

    github_runner()
"""

import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase
from pyinfra.context import host
from pyinfra.facts.server import Arch
from pyinfra.operations import files, python, server, systemd

from runner_ctl.errors import RunnerCtlError
from runner_ctl.forge.github_runners import (
    custom_labels,
    delete_runner,
    github_client,
    list_runners_raw,
    registration_token,
    remove_token,
    set_labels,
    web_scope_url,
)
from runner_ctl.forge.rest import RestClient
from runner_ctl.layerkit import host_settings, put_secret, render_template, resolve_host_secret, settings_defaults
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.github_runner import (
    MAX_NAME_LENGTH,
    RUNNER_ROOT,
    GitHubRunnerRegistration,
    GitHubRunnerSettings,
    runner_names,
)
from runner_ctl.tools import Binary, ToolError, ensure_cached

__all__ = ["RELEASES", "RunnerSlots", "SlotState", "apply", "github_runner", "unit_name"]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "github_runner"
RELEASES = f"{RUNNER_ROOT}/.releases"
# Root-only: where a registration or remove token waits for config.sh, for seconds.
TOKENS = f"{RUNNER_ROOT}/.tokens"
RELEASE_MARK = ".runner-ctl-release"
_ARCHES = {"x86_64": "x64", "aarch64": "arm64", "armv7l": "arm"}
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SlotState:
    """What a slot directory on the host holds: its ``.runner`` and the release runner-ctl extracted."""

    name: str
    github_url: str | None = None
    agent_name: str | None = None
    agent_id: int | None = None
    release: str | None = None  # "<version> <sha256>"


class RunnerSlots(FactBase[dict[str, SlotState]]):
    """The slot directories under ``root``, by name (dot directories are runner-ctl's own)."""

    def command(self, root: str) -> str:
        return (
            f'for d in {shlex.quote(root)}/*/; do [ -d "$d" ] || continue; '
            'printf "slot %s\\n" "$(basename "$d")"; '
            'if [ -f "$d.runner" ]; then printf "runner "; tr -d "\\r\\n" < "$d.runner"; echo; fi; '
            f'if [ -f "$d{RELEASE_MARK}" ]; then printf "release "; head -n 1 "$d{RELEASE_MARK}"; fi; '
            "done; true"
        )

    def process(self, output: Any) -> dict[str, SlotState]:
        slots: dict[str, SlotState] = {}
        current: SlotState | None = None
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "slot":
                current = slots[rest] = SlotState(rest)
            elif current is not None and kind == "runner":
                try:
                    # The real runner writes .runner with a byte order mark.
                    raw = json.loads(rest.lstrip("\ufeff"))
                    agent_id = int(raw["agentId"])
                except (ValueError, KeyError, TypeError):
                    continue
                current = slots[current.name] = SlotState(
                    current.name, str(raw.get("gitHubUrl")), str(raw.get("agentName")), agent_id, current.release
                )
            elif current is not None and kind == "release":
                current = slots[current.name] = SlotState(
                    current.name, current.github_url, current.agent_name, current.agent_id, rest.strip()
                )
        return slots

    @staticmethod
    def default() -> dict[str, SlotState]:
        return {}


def unit_name(scope: str, name: str) -> str:
    """``svc.sh``'s unit name: actions.runner.<owner-repo or org>.<name>.service."""
    return f"actions.runner.{re.sub(r'[^A-Za-z0-9._-]', '-', scope)}.{name}.service"


@dataclass
class Slot:
    name: str
    scope: str
    registration: GitHubRunnerRegistration | None  # None: an orphan slot no registration wants
    url: str
    remote: dict[str, Any] | None = None  # the API's runner object of this name
    local: SlotState | None = None
    token: str | None = None  # a registration or remove token, when one is needed
    notes: list[str] = field(default_factory=list)


def _fail(error: Exception) -> PyinfraError:
    return PyinfraError(f"{host.name}: github_runner: {error}")


class _Api:
    """One client per API token, each scope's runners listed once per deploy."""

    def __init__(self, settings: GitHubRunnerSettings) -> None:
        self.settings = settings
        self.clients: dict[str, RestClient] = {}
        self.runners: dict[str, dict[str, dict[str, Any]]] = {}

    def client(self, registration: GitHubRunnerRegistration | None) -> RestClient:
        reference, what = self.settings.github_runner_token, "github_runner_token"
        if registration is not None and registration.token is not None:
            reference, what = registration.token, f"github_runner_registrations {registration.scope} token"
        if reference is None:
            raise PyinfraError(f"{host.name}: github_runner_token is not set; it is needed to deregister old runners")
        if what not in self.clients:
            token = resolve_host_secret(reference, what=what)
            if not token.strip() or any(ch.isspace() for ch in token):
                raise PyinfraError(
                    f"{what}: the secret {reference} gives is blank or holds whitespace; expected a token"
                )
            self.clients[what] = github_client(
                self.settings.github_runner_api_url, token, token_what=f"{what} ({reference})"
            )
        return self.clients[what]

    def listed(self, registration: GitHubRunnerRegistration | None, scope: str) -> dict[str, dict[str, Any]]:
        if scope not in self.runners:
            try:
                raw = list_runners_raw(self.client(registration), scope)
            except RunnerCtlError as error:
                raise _fail(error) from None
            self.runners[scope] = {str(runner["name"]): runner for runner in raw}
        return self.runners[scope]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _scope_of(github_url: str, server_url: str) -> str | None:
    """The scope a slot's ``.runner`` gitHubUrl names, if it is on this server."""
    if not github_url.startswith(server_url.rstrip("/") + "/"):
        return None
    parts = [part for part in urlsplit(github_url).path.split("/") if part]
    if len(parts) == 2 and parts[0] == "enterprises":
        return f"enterprise:{parts[1]}"
    return "/".join(parts) if len(parts) in (1, 2) else None


def _plan(settings: GitHubRunnerSettings, installed: dict[str, SlotState], api: _Api) -> tuple[list[Slot], list[Slot]]:
    """(wanted slots, slots to deregister), with the API's view of each; no operation yet."""
    prefix = settings.github_runner_name_prefix
    # Names reach paths and unit names: the inventory name as one word ("@local" -> "local").
    host_word = _NOT_NAME.sub("-", host.name).strip("-._") or "host"
    server_url = settings.server_url()
    wanted: list[Slot] = []
    gone: list[Slot] = []
    for registration in settings.github_runner_registrations:
        url = web_scope_url(server_url, registration.scope)
        for name in runner_names(prefix, host_word, registration):
            if len(name) > MAX_NAME_LENGTH:
                raise PyinfraError(
                    f"{host.name}: github_runner: runner name {name} is longer than {MAX_NAME_LENGTH} characters; "
                    "shorten github_runner_name_prefix or the registration's name"
                )
            slot = Slot(name, registration.scope, registration, url, local=installed.get(name))
            slot.remote = api.listed(registration, registration.scope).get(name)
            (wanted if registration.present else gone).append(slot)
    known = {slot.name for slot in wanted + gone}
    for name, local in sorted(installed.items()):
        if name in known or not name.startswith(prefix) or local.github_url is None:
            continue
        scope = _scope_of(local.github_url, server_url)
        if scope is None:
            continue
        if settings.github_runner_token is None:
            host.log(f"github_runner: {name} is no longer wanted; set github_runner_token to deregister it")
            continue
        slot = Slot(name, scope, None, local.github_url, local=local)
        slot.remote = api.listed(None, scope).get(name)
        gone.append(slot)
    return wanted, gone


def _registered(slot: Slot) -> bool:
    local, remote = slot.local, slot.remote
    return (
        local is not None
        and local.github_url == slot.url
        and local.agent_name == slot.name
        and remote is not None
        and remote.get("id") == local.agent_id
    )


def _release(settings: GitHubRunnerSettings) -> tuple[str, str]:
    """(the tarball's path on the host, its "<version> <sha256>" mark), after the local check."""
    arch = host.get_fact(Arch)
    if _ARCHES.get(arch, arch) != settings.github_runner_arch:
        raise PyinfraError(
            f"{host.name}: github_runner_arch is {settings.github_runner_arch!r}, and this host is {arch}; "
            f"set github_runner_arch = {_ARCHES.get(arch, arch)!r}"
        )
    version, digest = settings.github_runner_version, settings.github_runner_sha256
    assert version is not None and digest is not None  # the spec requires both with a present registration
    tarball = f"actions-runner-linux-{settings.github_runner_arch}-{version}.tar.gz"
    binary = Binary(
        tool="actions-runner", kind="file", url=settings.download_url(), sha256=digest, os="linux",
        cpu=settings.github_runner_arch, file=tarball, type="",
    )  # fmt: skip
    try:
        verified = ensure_cached(binary)
    except ToolError as error:
        raise PyinfraError(f"{host.name}: github_runner_download_url: {error}") from None
    files.directory(name=RUNNER_ROOT, path=RUNNER_ROOT, user="root", group="root", mode="755")
    files.directory(name=RELEASES, path=RELEASES, user="root", group="root", mode="755")
    files.put(
        name=f"actions-runner {version} release (sha256 verified)",
        src=str(verified),
        dest=f"{RELEASES}/{tarball}",
        user="root",
        group="root",
        mode="644",
    )
    return f"{RELEASES}/{tarball}", f"{version} {digest}"


def _with_token(slot: Slot, what: str, script: str) -> None:
    """Run ``script`` (root, sh) with the slot's token in ``$ACTIONS_RUNNER_INPUT_TOKEN`` only.

    The token travels in a root-only file (put_secret: never in argv or a log); the command
    line names only the file, which is removed whatever happens.
    """
    assert slot.token is not None
    secret = f"{TOKENS}/{slot.name}"
    files.directory(name=f"{TOKENS} (root only)", path=TOKENS, user="root", group="root", mode="700")
    put_secret(name=f"{what} token for {slot.name}", content=slot.token + "\n", dest=secret, user="root",
               group="root", mode="600")  # fmt: skip
    server.shell(
        name=f"{what} {slot.name}",
        commands=[
            f"set -eu; secret={shlex.quote(secret)}; trap 'rm -f \"$secret\"' EXIT; "
            'ACTIONS_RUNNER_INPUT_TOKEN=$(cat "$secret"); export ACTIONS_RUNNER_INPUT_TOKEN; '
            f"{script}"
        ],
    )


def _config_args(slot: Slot, work: str) -> str:
    registration = slot.registration
    assert registration is not None
    args = ["--unattended", "--url", slot.url, "--name", slot.name, "--labels", ",".join(registration.labels),
            "--work", work, "--replace"]  # fmt: skip
    if registration.runner_group is not None:
        args += ["--runnergroup", registration.runner_group]
    return " ".join(shlex.quote(arg) for arg in args)


def _install(slot: Slot, settings: GitHubRunnerSettings, base: BaseLayerSettings, release: tuple[str, str]) -> None:
    user, directory = base.runner_user, f"{RUNNER_ROOT}/{slot.name}"
    work = f"{base.data_dir}/actions-runner/{slot.name}"
    unit = unit_name(slot.scope, slot.name)
    tarball, mark = release
    digest = mark.split()[1]
    registered = _registered(slot)
    upgrade = slot.local is None or slot.local.release != mark
    if upgrade and registered and slot.remote is not None and slot.remote.get("busy"):
        host.log(
            f"github_runner: {slot.name} is running a job; its upgrade to {mark.split()[0]} waits for the next deploy"
        )
        upgrade = False
    files.directory(name=f"{slot.name} directory", path=directory, user=user, group=user, mode="755")
    files.directory(name=f"{slot.name} work directory", path=work, user=user, group=user, mode="700")
    # A listener that was running is stopped while its files change and started again after.
    stop = f"was=; if systemctl is-active -q {unit}; then was=1; systemctl stop {unit}; fi; "
    start = f'if [ -n "$was" ]; then systemctl start {unit}; fi'
    if upgrade:
        # Between jobs: the new release goes over the old one (.runner, .credentials and
        # _diag are not in a release).
        server.shell(
            name=f"Extract actions-runner {mark.split()[0]} into {directory} (sha256 checked on the host too)",
            commands=[
                f"set -eu; echo {digest}'  '{shlex.quote(tarball)} | sha256sum -c --quiet -; {stop}"
                f"runuser -u {user} -- tar -xzf {shlex.quote(tarball)} -C {directory}; "
                f"echo {shlex.quote(mark)} | runuser -u {user} -- tee {directory}/{RELEASE_MARK} >/dev/null; {start}"
            ],
        )
    if not registered:
        # Configured for another URL or name, or unknown to GitHub now (pruned): config.sh
        # refuses a configured directory, and --replace takes the name over remotely.
        forget = f"rm -f {directory}/.runner {directory}/.credentials {directory}/.credentials_rsaparams; "
        _with_token(
            slot,
            "Register",
            f"{stop}{forget}cd {directory}; runuser -u {user} -- ./config.sh {_config_args(slot, work)}; {start}",
        )
    elif slot.registration is not None and slot.remote is not None:
        have = custom_labels(slot.remote.get("labels", []))
        want = list(slot.registration.labels)
        if sorted(label.lower() for label in have) != sorted(label.lower() for label in want):
            python.call(
                name=f"Labels of {slot.name}: {', '.join(want) or '(none)'} (labels API, no new registration)",
                function=_put_labels,
                settings=settings,
                registration=slot.registration,
                runner_id=int(slot.remote["id"]),
                labels=want,
            )
    unit_file = files.put(
        name=f"Unit {unit}",
        src=io.StringIO(
            render_template(
                TEMPLATES / "actions.runner.service.j2",
                scope=slot.scope,
                name=slot.name,
                directory=directory,
                user=user,
            )
        ),
        dest=f"/etc/systemd/system/{unit}",
        user="root",
        group="root",
        mode="644",
    )
    systemd.service(
        name=f"Run {unit}",
        service=unit,
        running=True,
        enabled=True,
        daemon_reload=bool(unit_file.will_change),
        restarted=bool(unit_file.will_change) and slot.local is not None,
    )


def _put_labels(settings: GitHubRunnerSettings, registration: GitHubRunnerRegistration, runner_id: int,
                labels: list[str]) -> None:  # fmt: skip
    api = _Api(settings)
    try:
        set_labels(api.client(registration), registration.scope, runner_id, labels)
    finally:
        api.close()


def _delete_remote(settings: GitHubRunnerSettings, registration: GitHubRunnerRegistration | None, scope: str,
                   runner_id: int) -> None:  # fmt: skip
    api = _Api(settings)
    try:
        delete_runner(api.client(registration), scope, runner_id)
    finally:
        api.close()


def _remove(slot: Slot, settings: GitHubRunnerSettings, base: BaseLayerSettings) -> None:
    user, directory = base.runner_user, f"{RUNNER_ROOT}/{slot.name}"
    work = f"{base.data_dir}/actions-runner/{slot.name}"
    unit = unit_name(slot.scope, slot.name)
    if slot.remote is not None and slot.remote.get("busy"):
        raise PyinfraError(
            f"{host.name}: github_runner: {slot.name} is running a job; deploy again when it is idle to remove it"
        )
    configured = slot.local is not None and slot.local.github_url is not None
    systemd.service(name=f"Stop {unit}", service=unit, running=False, enabled=False)
    if configured and slot.token is not None:
        _with_token(slot, "Deregister", f"cd {shlex.quote(directory)}; runuser -u {shlex.quote(user)} -- "
                    "./config.sh remove")  # fmt: skip
    elif slot.remote is not None:
        python.call(
            name=f"Delete runner {slot.name} through the API (no local registration left)",
            function=_delete_remote,
            settings=settings,
            registration=slot.registration,
            scope=slot.scope,
            runner_id=int(slot.remote["id"]),
        )
    removed = files.file(name=f"Remove unit {unit}", path=f"/etc/systemd/system/{unit}", present=False)
    if removed.will_change:
        server.shell(name="systemctl daemon-reload", commands=["systemctl daemon-reload"])
    files.directory(name=f"Remove {directory}", path=directory, present=False)
    files.directory(name=f"Remove {work}", path=work, present=False)


@deploy("github_runner", data_defaults=settings_defaults())
def github_runner() -> None:
    """Register, update or remove the GitHub Actions runners of the current host."""
    apply(host_settings())


def apply(every: Any) -> None:
    settings = every.of(GitHubRunnerSettings)
    base = every.of(BaseLayerSettings)
    installed = host.get_fact(RunnerSlots, root=RUNNER_ROOT)
    if not settings.enabled and not installed:
        return  # the default: nothing installed, nothing to ask GitHub
    api = _Api(settings)
    try:
        wanted, gone = _plan(settings, installed, api)
        # Every token before the first operation: an API refusal leaves the host untouched.
        for slot in wanted:
            if not _registered(slot):
                slot.token = _token(api, slot, registration_token)
        for slot in gone:
            if slot.local is not None and slot.local.github_url is not None:
                slot.token = _token(api, slot, remove_token)
    finally:
        api.close()
    release = _release(settings) if wanted else None
    if wanted:
        work_root = f"{base.data_dir}/actions-runner"
        files.directory(name=work_root, path=work_root, user=base.runner_user, group=base.runner_user, mode="755")
    for slot in gone:
        _remove(slot, settings, base)
    for slot in wanted:
        assert release is not None
        _install(slot, settings, base, release)
    if release is not None:
        _prune_releases(release[0])
    elif not any(name not in {slot.name for slot in gone} for name in installed):
        files.directory(name=f"No runners left: remove {RUNNER_ROOT}", path=RUNNER_ROOT, present=False)
        files.directory(
            name=f"No runners left: remove {base.data_dir}/actions-runner",
            path=f"{base.data_dir}/actions-runner",
            present=False,
        )


def _token(api: _Api, slot: Slot, kind: Any) -> str:
    try:
        return str(kind(api.client(slot.registration), slot.scope))
    except RunnerCtlError as error:
        raise _fail(error) from None


def _prune_releases(keep: str) -> None:
    """Only the release in use stays: each is a few hundred MB."""
    name = Path(keep).name
    if any(other != name for other in host.get_fact(_Releases, directory=RELEASES)):
        server.shell(
            name=f"Keep only {name} in {RELEASES}",
            commands=[f"find {RELEASES} -maxdepth 1 -type f ! -name {shlex.quote(name)} -delete"],
        )


class _Releases(FactBase[list[str]]):
    def command(self, directory: str) -> str:
        return f"ls -1 {shlex.quote(directory)} 2>/dev/null || true"

    def process(self, output: Any) -> list[str]:
        return [line for line in output if line.strip()]

    @staticmethod
    def default() -> list[str]:
        return []
