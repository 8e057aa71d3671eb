"""``runner-ctl rehearse``: the production deploy, tried on disposable local Debian 12 hosts.

Steps, each named in the report when it fails:

1. validate  - group data and ``--hosts``, before any host is touched
2. boot      - a fresh test host; with ``--hosts N`` > 1, N hosts on one fresh private
   network (as DigitalOcean's VPC), the fleet production gets from ``runner_count = N``
3. first deploy  - the pyinfra deploy over an inventory of every host, with production's
   group data plus the test hosts' connection data and local apt source; for the layers whose
   outside world cannot be reached from here (GitHub's and GitLab's APIs, the runner releases
   and packages), the checkout's stand-ins in tests/standins/ are started on the first host's
   controller address (which every host of a fleet is routed to) and the group data points
   those layers at them, each said in the report (``standins``)
4. host checks   - tests/host (testinfra over SSH), on each host
5. fleet checks  - tests/fleet, once for the whole fleet (only with more than one host)
6. second deploy - the same deploy again; pyinfra must report zero changed operations on every host
7. teardown  - unless kept
"""

import contextlib
import importlib
import importlib.util
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner_ctl.errors import PrerequisiteError, RunnerCtlError, StepError, UsageError
from runner_ctl.hostchecks import CheckRun, combine_checks, run_fleet_checks, run_host_checks
from runner_ctl.hostdata import (
    DeployLockSettings,
    HostSettings,
    available_layers,
    load_group_data,
    validate_host_data,
)
from runner_ctl.paths import cache_dir, is_project_root
from runner_ctl.pyinfra_run import DeployRun, run_deploy
from runner_ctl.secretrefs import resolve_lock_secrets, resolve_secret
from runner_ctl.testhost import (
    APT_SOURCE_LINE,
    VOLUME_DEVICE,
    DisposableHost,
    boot_host,
    check_prerequisites,
    destroy_host,
    free_host_slots,
    host_capacity,
    network_dir,
    private_subnet,
    route_to_controller_address,
    subnet,
)

__all__ = [
    "HOST_DATA_FILE",
    "REAL_SECRETS_ENV",
    "RehearsalReport",
    "check_host_count",
    "load_settings",
    "rehearse",
    "resolve_deploy",
    "standins_dir",
]

# Written into the test host's directory: the settings the deploy ran with, for the checks.
HOST_DATA_FILE = "host-data.json"
# A deploy to a test host resolves every secret reference to a stand-in (inventories/testhost.py)
# unless this is "1" (``rehearse --real-secrets``).
REAL_SECRETS_ENV = "RUNNER_CTL_REAL_SECRETS"
# The rehearsal host's stand-in for the production cache volume (a sparse file: little disk).
REHEARSAL_VOLUME_MB = 512
# Layers whose outside world a rehearsal replaces with the checkout's stand-ins
# (tests/standins/<layer>_rehearsal.py), and the key of the API token each one uses.
STANDIN_WORLDS: dict[str, str] = {
    "github_runner": "github_runner_token",
    "gitlab_runner": "gitlab_runner_api_token",
}
# In the test host's directory: the group data that points those layers at their stand-ins.
STANDIN_GROUP_DATA = "standin-group-data"

Progress = Callable[[str], None]


@dataclass
class RehearsalReport:
    ok: bool = False
    layers: list[str] = field(default_factory=list)
    first_run: DeployRun | None = None
    second_run: DeployRun | None = None
    checks: CheckRun | None = None
    host: str | None = None
    hosts: list[str] = field(default_factory=list)
    fleet_checks: CheckRun | None = None
    kept: bool = False
    failed_step: str | None = None
    error: str | None = None
    logs: str | None = None
    standins: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``rehearse --json`` contract (plus host, hosts, fleet_checks, failed_step, error and logs).

        ``host`` is the first host (the only one without ``--hosts``); ``hosts`` names them all.
        """
        empty_run = {"seconds": 0.0, "operations": 0, "changed": 0}
        return {
            "ok": self.ok,
            "layers": self.layers,
            "first_run": self.first_run.summary() if self.first_run else empty_run,
            "second_run": self.second_run.summary() if self.second_run else empty_run,
            "checks": self.checks.summary() if self.checks else {"passed": 0, "failed": 0},
            "host": self.host,
            "hosts": self.hosts,
            "fleet_checks": self.fleet_checks.summary() if self.fleet_checks else {"passed": 0, "failed": 0},
            "kept": self.kept,
            "failed_step": self.failed_step,
            "error": self.error,
            "logs": self.logs,
            "standins": self.standins,
        }


def standins_dir(host: DisposableHost) -> Path:
    """Where a test host's stand-in secrets live: its own directory, removed with it.

    For a host on a private network, its network's directory: a fleet shares one set, so a
    secret the hosts share (the lock's CI token, the forward's key) is the same stand-in on
    each, however a deploy or a check names the hosts.
    """
    if host.network:
        return network_dir(host.network) / "secret-standins"
    return Path(host.directory) / "secret-standins"


def resolve_deploy(deploy: Path | None, project_root: Path) -> tuple[Path, Path]:
    """(project root, deploy file); the project is the checkout that holds the deploy file."""
    path = (deploy or project_root / "deploys" / "runner_host.py").absolute()
    if not path.is_file():
        raise UsageError(f"--deploy {path}: no such file; expected a deploy such as deploys/runner_host.py")
    root = path.parent.parent
    if path.parent.name != "deploys" or not is_project_root(root):
        raise UsageError(
            f"--deploy {path}: expected a file in a checkout's deploys/ directory (next to inventories/group_data/)"
        )
    return root, path


def load_settings(project_root: Path, standin_data: dict[str, Any] | None = None) -> HostSettings:
    """Production's group data with the test host's apt source (and ``standin_data``), validated."""
    data = load_group_data(project_root / "inventories" / "group_data")
    data["apt_sources"] = [APT_SOURCE_LINE]
    # Production hosts keep their caches on a DigitalOcean volume; so does the test host.
    data["data_device"] = VOLUME_DEVICE
    data.update(standin_data or {})
    return validate_host_data(data, available=available_layers(project_root), origin="inventories/group_data")


def _standin_module(project_root: Path, layer: str) -> Any:
    name = f"tests.standins.{layer}_rehearsal"
    if not (project_root / "tests" / "standins" / f"{layer}_rehearsal.py").is_file():
        raise PrerequisiteError(
            f"the {layer} layer is rehearsed against the stand-ins in tests/standins/, which this checkout lacks; "
            f"take {layer} out of `layers` or rehearse from a full checkout"
        )
    if str(project_root) not in sys.path:
        sys.path.insert(0, str(project_root))
    return importlib.import_module(name)


def start_standin_worlds(
    stack: contextlib.ExitStack,
    *,
    project_root: Path,
    layers: tuple[str, ...],
    host: DisposableHost,
    real_secrets: bool,
) -> tuple[dict[str, Any], list[str]]:
    """Start the stand-ins of every layer in ``STANDIN_WORLDS`` that is deployed; (group data, summaries).

    Each stand-in API accepts one token, which the group data names by a file reference in the
    host's directory. With stand-in secrets that file holds the very stand-in the deploy resolves
    every reference to, so both ways of rehearsing give the stand-in the token it expects.
    """
    data: dict[str, Any] = {}
    summaries: list[str] = []
    for layer, token_key in STANDIN_WORLDS.items():
        if layer not in layers:
            continue
        module = _standin_module(project_root, layer)
        workdir = Path(host.directory) / "standins" / layer
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        token_file = workdir / "api-token"
        token_ref = f"file:{token_file}"
        token = secrets.token_hex(20) if real_secrets else ""
        if not real_secrets:
            token = resolve_secret(token_ref, what=token_key, standins=standins_dir(host))
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        world = stack.enter_context(module.rehearsal_world(host.controller_address, token, workdir))
        data.update(world.group_data)
        data[token_key] = token_ref
        summaries.append(world.summary)
    return data, summaries


def check_host_count(hosts: int) -> None:
    """A one-line error, before any host boots, when ``--hosts`` cannot be had here."""
    capacity = host_capacity()
    if hosts < 1:
        raise UsageError(f"--hosts {hosts} is out of range; expected 1 to {capacity} test hosts")
    free = free_host_slots()
    if hosts > free:
        raise UsageError(
            f"--hosts {hosts} is more than the test host ranges hold: {subnet()} and {private_subnet()} "
            f"hold {capacity} hosts, {capacity - free} in use; ask for at most {free}, or set larger "
            "RUNNER_CTL_TESTHOST_SUBNET / RUNNER_CTL_TESTHOST_PRIVATE_SUBNET"
        )


def write_group_data(directory: Path, data: dict[str, Any]) -> Path:
    """``data`` as a pyinfra group data directory (``all.py``) that ``--group-data`` loads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "all.py").write_text("".join(f"{key} = {value!r}\n" for key, value in data.items()))
    return directory


def _boot(booted: list[DisposableHost], count: int, progress: Progress) -> None:
    """Boot ``count`` hosts into ``booted`` (appended as each comes up, for the caller's teardown).

    One host boots exactly as it always has. A fleet shares one fresh private network, and
    every host is routed to the first host's controller address, where the stand-ins listen.
    """
    if count == 1:
        progress("booting a disposable Debian 12 test host")
        booted.append(boot_host(volume_mb=REHEARSAL_VOLUME_MB))
        return
    network = f"rf{secrets.token_hex(4)}"
    for index in range(count):
        progress(f"booting disposable Debian 12 test host {index + 1} of {count} on private network {network}")
        host = boot_host(volume_mb=REHEARSAL_VOLUME_MB, network=network)
        booted.append(host)
        if index:
            route_to_controller_address(host, booted[0].controller_address)


def rehearse(
    deploy: Path | None,
    *,
    project_root: Path,
    keep: bool = False,
    real_secrets: bool = False,
    hosts: int = 1,
    progress: Progress = print,
) -> RehearsalReport:
    """Run every step; never raises for a failing step (the report names it).

    Secrets are generated stand-ins unless ``real_secrets``: a rehearsal needs no access to
    production's secrets, and never copies them to a test host. ``hosts`` > 1 rehearses a
    fleet: every step runs over all of them, plus the fleet checks.
    """
    root, deploy_file = resolve_deploy(deploy, project_root)
    check_host_count(hosts)
    settings = load_settings(root)  # bad group data raises here, before any host exists
    if real_secrets:
        # The same check the layer makes, before a host is booted for nothing.
        resolve_lock_secrets((t.name, t.secret) for t in settings.of(DeployLockSettings).deploy_lock_tokens)
    check_prerequisites()
    missing = [module for module in ("pyinfra", "testinfra") if importlib.util.find_spec(module) is None]
    if missing:
        raise PrerequisiteError(
            f"rehearse needs {' and '.join(missing)}: pip install 'runner-ctl[operator]' (bin/bootstrap does)"
        )
    report = RehearsalReport(layers=list(settings.layers))
    step = "boot"
    fleet: list[DisposableHost] = []
    stack = contextlib.ExitStack()
    try:
        _boot(fleet, hosts, progress)
        host = fleet[0]
        names = [each.name for each in fleet]
        logs = cache_dir() / "rehearse" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{host.name}"
        logs.mkdir(parents=True, exist_ok=True)
        report.logs = str(logs)
        step = "stand-ins"
        standin_data, report.standins = start_standin_worlds(
            stack, project_root=root, layers=settings.layers, host=host, real_secrets=real_secrets
        )
        for summary in report.standins:
            progress(f"stand-in: {summary}")
        settings = load_settings(root, standin_data)
        group_data = write_group_data(Path(host.directory) / STANDIN_GROUP_DATA, standin_data)
        for each in fleet:
            (Path(each.directory) / HOST_DATA_FILE).write_text(json.dumps(settings.dump()))

        def deploy_once(label: str) -> DeployRun:
            return run_deploy(
                project_root=root,
                inventory=root / "inventories" / "testhost.py",
                deploy=deploy_file,
                env={"RUNNER_CTL_TESTHOST": ",".join(names), REAL_SECRETS_ENV: "1" if real_secrets else "0"},
                log_path=logs / f"{label.replace(' ', '-')}.log",
                label=label,
                group_data=group_data,
            )

        where = ", ".join(f"{each.name} ({each.address})" for each in fleet)
        step = "first deploy"
        progress(f"{step}: {deploy_file.relative_to(root)} on {where}")
        report.first_run = deploy_once(step)

        step = "host checks"
        runs = []
        for each in fleet:
            progress(f"{step}: tests/host on {each.name}")
            runs.append(
                run_host_checks(
                    project_root=root,
                    host_name=each.name,
                    log_dir=logs if len(fleet) == 1 else logs / each.name,
                    fleet=names,
                )
            )
        report.checks = combine_checks(names, runs)
        if report.checks.failed:
            raise StepError(
                f"{report.checks.failed} host check(s) failed: {', '.join(report.checks.failures)} "
                f"(log: {report.checks.log})"
            )

        if len(fleet) > 1:
            step = "fleet checks"
            progress(f"{step}: tests/fleet on {', '.join(names)}")
            report.fleet_checks = run_fleet_checks(project_root=root, fleet=names, log_dir=logs / "fleet")
            if report.fleet_checks.failed:
                raise StepError(
                    f"{report.fleet_checks.failed} fleet check(s) failed: {', '.join(report.fleet_checks.failures)} "
                    f"(log: {report.fleet_checks.log})"
                )

        step = "second deploy"
        progress(f"{step}: the same deploy again, which must change nothing")
        report.second_run = deploy_once(step)
        if report.second_run.changed:
            raise StepError(
                f"not idempotent: the second run changed {report.second_run.changed} operation(s): "
                + ", ".join(report.second_run.changed_names)
            )
        report.ok = True
    except RunnerCtlError as error:
        report.failed_step = step
        report.error = error.message
    finally:
        stack.close()  # the stand-ins stop before the hosts go
        report.hosts = [each.name for each in fleet]
        report.host = report.hosts[0] if report.hosts else None
        if not keep:
            # The first host last: the stand-ins' own files live in its directory.
            for each in reversed(fleet):
                progress(f"tearing down {each.name}")
                try:
                    destroy_host(each.name)
                except RunnerCtlError as error:
                    if report.ok:
                        report.ok, report.failed_step, report.error = False, "teardown", error.message
                    else:
                        report.error = f"{report.error}; teardown also failed: {error.message}"
        report.kept = bool(fleet) and keep
    return report
