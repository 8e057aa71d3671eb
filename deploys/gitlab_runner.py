"""GitLab runner layer: GitLab Runner from GitLab's signed apt repository, its runners registered safely.

Install: the repository's signing key is fetched on the operator's machine and kept only if
its fingerprint is the pinned one; apt trusts that key for this source alone (``signed-by``).
``gitlab-runner`` and ``gitlab-runner-helper-images`` are pinned to one version and held.

Runners: each registration's token is a ``glrt-`` token from a secret reference (verified
through ``POST /runners/verify``) or one created on the operator's machine through
``POST /user/runners``. Tokens reach the host only through ``layerkit.put_secret``, into
root-only files under ``/etc/gitlab-runner/runner-ctl-tokens``; ``config.toml`` (0600, the
runner user's) is written from a template with placeholders that the host fills in from those
files (the operator never needs a created token again, and it is never in argv). Changed
tags go through ``PUT /runners/:id``, never a new registration. ``present: False`` deletes
the runner in GitLab and its section, token and build directory on the host.

The service runs as the runner user; a drop-in stops it gracefully (SIGQUIT, a long
TimeoutStopSec) and signals only the runner (``KillMode=process``), so Bazel servers started
by jobs survive restarts. With no registration present nothing is installed, and what an
earlier deploy installed is removed.

Group data keys (defaults and documentation in ``runner_ctl.layers.gitlab_runner``):

+ gitlab_runner_registrations: the runners (project/group/instance, tags, name, token, present)
+ gitlab_runner_api_url / gitlab_runner_api_token: the GitLab API and a token to create and manage runners
+ gitlab_runner_version: the pinned release (X.Y.Z)
+ gitlab_runner_apt_repo / gitlab_runner_apt_key_url / gitlab_runner_apt_key_fingerprint: the source and its key
+ gitlab_runner_name_prefix / gitlab_runner_concurrent / gitlab_runner_check_interval
+ gitlab_runner_environment / gitlab_runner_listen_address / gitlab_runner_stop_timeout

Example:

.. code:: python

    from deploys.gitlab_runner import gitlab_runner

    gitlab_runner()
"""

import contextlib
import io
import json
import re
import shlex
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.operations import apt, files, python, server, systemd
from pyinfra.operations.util import any_changed

from runner_ctl.errors import RunnerCtlError
from runner_ctl.forge.gitlab_runners import (
    CREATE_SCOPE,
    create_runner,
    delete_runner,
    get_runner,
    gitlab_client,
    list_runners,
    namespace_id,
    set_tags,
    verify,
)
from runner_ctl.forge.httpcache import ApiCounters, HttpCache
from runner_ctl.forge.rest import NotFoundError, RestClient
from runner_ctl.hostdata import HostSettings
from runner_ctl.layerkit import host_settings, put_secret, render_template, resolve_host_secret, settings_defaults
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.gitlab_runner import GitLabRegistration, GitLabRunnerSettings, package_version, runner_name
from runner_ctl.openpgp import pinned_keyring

__all__ = [
    "CONFIG",
    "DROPIN",
    "KEYRING",
    "TOKENS",
    "apply",
    "gitlab_runner",
    "pinned_keyring",
    "render_config",
]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "gitlab_runner"
ETC = "/etc/gitlab-runner"
CONFIG = f"{ETC}/config.toml"
CONFIG_IN = f"{ETC}/config.toml.runner-ctl"  # the config with token placeholders
TOKENS = f"{ETC}/runner-ctl-tokens"
STATE = f"{ETC}/runner-ctl-runners.json"  # runner name -> GitLab runner id (no secrets)
KEYRING = "/usr/share/keyrings/runner-ctl-gitlab-runner.gpg"
SOURCE = "/etc/apt/sources.list.d/runner-ctl-gitlab-runner.list"
PIN = "/etc/apt/preferences.d/runner-ctl-gitlab-runner"
UNIT = "gitlab-runner.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/runner-ctl.conf"
PACKAGES = ("gitlab-runner", "gitlab-runner-helper-images")
PACKAGE_USER = "gitlab-runner"  # the package's postinst makes it; this layer runs jobs as the runner user instead
SUITE = "bookworm"
_TOKEN = re.compile(r"^glrt-[A-Za-z0-9_.-]{8,256}$")
_PLACEHOLDER = "@@runner-ctl-token:{name}@@"
_KEY_TIMEOUT = 30.0


# ---- the signing key --------------------------------------------------------------------


def _fetch_key(url: str) -> bytes:
    try:
        answer = httpx.get(url, timeout=_KEY_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as error:
        raise PyinfraError(
            f"gitlab_runner_apt_key_url: cannot fetch {url} ({type(error).__name__}); check the URL"
        ) from None
    if answer.status_code != 200:
        raise PyinfraError(f"gitlab_runner_apt_key_url: {url} answered HTTP {answer.status_code}; check the URL")
    return answer.content


# ---- facts --------------------------------------------------------------------------------


class _RunnerIds(FactBase[dict[str, int]]):
    """The runners this layer made on the host, by name, with their GitLab ids (the state file)."""

    def command(self) -> str:
        return f"cat {STATE} 2>/dev/null || true"

    def process(self, output: Any) -> dict[str, int]:
        try:
            found = json.loads("\n".join(output) or "{}")
        except ValueError:
            return {}
        if not isinstance(found, dict):
            return {}
        return {str(k): v for k, v in found.items() if isinstance(v, int)}

    @staticmethod
    def default() -> dict[str, int]:
        return {}


class _TokenNames(FactBase[list[str]]):
    """Names of the runners whose token file is on the host (never their content)."""

    def command(self) -> str:
        return f"ls -1 {TOKENS} 2>/dev/null || true"

    def process(self, output: Any) -> list[str]:
        return [line.strip() for line in output if line.strip() and not line.startswith(".")]

    @staticmethod
    def default() -> list[str]:
        return []


class _Held(FactBase[list[str]]):
    def command(self) -> str:
        return "apt-mark showhold 2>/dev/null || true"

    def process(self, output: Any) -> list[str]:
        return [line.strip() for line in output if line.strip()]

    @staticmethod
    def default() -> list[str]:
        return []


# The host fills each token placeholder in from its root-only file: awk reads the file, so
# no token is ever an argument of any process.
_FILL = (
    "awk -v dir={tokens} '{{ while (match($0, /@@runner-ctl-token:[a-z0-9-]+@@/)) {{ "
    'n = substr($0, RSTART + 19, RLENGTH - 21); f = dir "/" n; t = ""; '
    'if ((getline t < f) <= 0) {{ print "no token file for " n > "/dev/stderr"; exit 3 }} close(f); '
    "$0 = substr($0, 1, RSTART - 1) t substr($0, RSTART + RLENGTH) }} print }}' {source}"
)


class _ConfigCurrent(FactBase[bool]):
    """Whether config.toml is what the template and the token files make, with its owner and mode."""

    def command(self, user: str) -> str:
        fill = _FILL.format(tokens=TOKENS, source=CONFIG_IN)
        return (
            f"t=$(mktemp); trap 'rm -f $t' EXIT; umask 077; {fill} > $t 2>/dev/null && cmp -s $t {CONFIG} "
            f"&& [ \"$(stat -c '%U %a' {CONFIG})\" = '{user} 600' ] && echo current || echo stale"
        )

    def process(self, output: Any) -> bool:
        return "current" in list(output)

    @staticmethod
    def default() -> bool:
        return False


@operation()
def _config(user: str) -> Generator[Any, None, None]:
    """config.toml from the template with every token filled in, mode 0600, the runner user's.

    Decided when it runs (pyinfra evaluates the generator again at execution), so the token
    files and template written just before are what it compares.
    """
    if host.get_fact(_ConfigCurrent, user=user):
        host.noop(f"{CONFIG} is up to date")
        return
    fill = _FILL.format(tokens=TOKENS, source=CONFIG_IN)
    yield StringCommand(
        f"set -e; umask 077; t=$(mktemp {ETC}/.config.toml.XXXXXX); {fill} > $t; "
        f"chown {shlex.quote(user)}:{shlex.quote(user)} $t; chmod 600 $t; mv -f $t {CONFIG}"
    )


# ---- the plan (operator's machine, before anything is queued) -----------------------------


@dataclass
class _Runner:
    index: int
    name: str
    registration: GitLabRegistration
    id: int | None = None
    token: str | None = field(default=None, repr=False)  # known on this machine: a glrt- reference's
    create: bool = False
    retag: bool = False
    namespace: int | None = None


@dataclass
class _Plan:
    client: RestClient | None
    present: list[_Runner]
    absent: list[_Runner]
    known: dict[str, int]  # the state file as it is now

    @property
    def api_work(self) -> bool:
        return any(r.create or r.retag for r in self.present) or any(r.id is not None for r in self.absent)


def _host_slug() -> str:
    return re.sub(r"[^a-z0-9-]+", "-", host.name.lower()).strip("-")[:40] or "host"


def _client(mine: GitLabRunnerSettings) -> RestClient:
    if mine.gitlab_runner_api_token is None:
        # POST /runners/verify needs no user token: the runner token in the body is the credential.
        return RestClient(
            forge="GitLab",
            base_url=mine.gitlab_runner_api_url,
            auth_headers={},
            token_env="the runner token",  # noqa: S106 - a description, not a token
            not_found=f"the GitLab API at {mine.gitlab_runner_api_url} has no such runner",
            cache=HttpCache(None),
            counters=ApiCounters(),
        )
    token = resolve_host_secret(mine.gitlab_runner_api_token, what="gitlab_runner_api_token")
    what = f"gitlab_runner_api_token ({mine.gitlab_runner_api_token.split(':', 1)[0]}:…)"
    return gitlab_client(
        mine.gitlab_runner_api_url,
        token,
        token_what=what,
        permission=f"{CREATE_SCOPE} to create runners, and manage_runner to change or delete them",
    )


def _plan(mine: GitLabRunnerSettings) -> _Plan:
    prefix, slug = mine.gitlab_runner_name_prefix, _host_slug()
    runners = [
        _Runner(index, runner_name(prefix, slug, index, r.name), r)
        for index, r in enumerate(mine.gitlab_runner_registrations, start=1)
    ]
    present = [r for r in runners if r.registration.present]
    absent = [r for r in runners if not r.registration.present]
    # Every secret first: a missing one stops the deploy before any request or change.
    for runner in present:
        reference = runner.registration.token
        if reference is None:
            continue
        what = f"gitlab_runner_registrations[{runner.index}].token ({reference.split(':', 1)[0]}:…)"
        token = resolve_host_secret(reference, what=what)
        if not _TOKEN.fullmatch(token):
            raise PyinfraError(
                f"{what}: the secret is not a runner authentication token (glrt-…); create the runner in GitLab "
                "(Settings > CI/CD > Runners) and use its token, or drop token to have runner-ctl create one"
            )
        runner.token = token
    client = _client(mine)
    has_api = mine.gitlab_runner_api_token is not None
    known = host.get_fact(_RunnerIds)
    tokens_on_host: set[str] = set(host.get_fact(_TokenNames))  # type: ignore[arg-type] # list[str] is Iterable
    for runner in present:
        if runner.token is not None:
            what = f"gitlab_runner_registrations[{runner.index}].token"
            runner.id = verify(client, runner.token, token_what=what)
        elif runner.name in known and runner.name in tokens_on_host:
            runner.id = known[runner.name]
            try:
                get_runner(client, runner.id)
            except NotFoundError:  # deleted in GitLab meanwhile: make a new one
                runner.id = None
        if runner.id is None and runner.token is None:
            runner.create = True
            if runner.registration.project:
                runner.namespace = namespace_id(client, "project", runner.registration.project)
            elif runner.registration.group:
                runner.namespace = namespace_id(client, "group", runner.registration.group)
        elif has_api and runner.id is not None:
            tags = get_runner(client, runner.id).get("tag_list") or []
            runner.retag = sorted(tags) != sorted(runner.registration.tags)
    for runner in absent:
        runner.id = known.get(runner.name)
        if runner.id is None:
            matches = [r.id for r in list_runners(client, runner.registration.target) if r.name == runner.name]
            runner.id = matches[0] if matches else None
        elif not _exists(client, runner.id):
            runner.id = None
    return _Plan(client if has_api else None, present, absent, known)


def _exists(client: RestClient, runner_id: int) -> bool:
    try:
        get_runner(client, runner_id)
    except NotFoundError:
        return False
    return True


# ---- what runs at execution (operator's machine and host) --------------------------------


def _put_token(name: str, token: str) -> None:
    put_secret(
        name=f"Token of runner {name} (content not shown)",
        content=token + "\n",
        dest=f"{TOKENS}/{name}",
        user="root",
        group="root",
        mode="600",
    )


def _put_state(state: dict[str, int]) -> None:
    files.put(
        name=f"Runner ids in {STATE}",
        src=io.StringIO(json.dumps(state, sort_keys=True) + "\n"),
        dest=STATE,
        user="root",
        group="root",
        mode="644",
    )


def _apply_in_gitlab(plan: _Plan, state: dict[str, int]) -> None:
    """Creates, retags and deletes runners in GitLab (only when the deploy really runs, never with --dry)."""
    client = plan.client
    assert client is not None, "API work without an API client"
    try:
        for runner in plan.absent:
            if runner.id is not None:
                with contextlib.suppress(NotFoundError):  # gone already: what present: False wants
                    delete_runner(client, runner.id)
            state.pop(runner.name, None)
        for runner in plan.present:
            if runner.create:
                created = create_runner(
                    client,
                    runner.registration.runner_type,
                    description=runner.name,
                    tags=runner.registration.tags,
                    namespace=runner.namespace,
                    run_untagged=runner.registration.run_untagged,
                )
                if not _TOKEN.fullmatch(created.token):
                    raise PyinfraError("the GitLab API created a runner whose token is not a glrt- token")
                runner.id = created.id
                state[runner.name] = created.id
                _put_token(runner.name, created.token)
            elif runner.retag and runner.id is not None:
                set_tags(client, runner.id, runner.registration.tags)
    except RunnerCtlError as error:
        raise PyinfraError(str(error)) from None
    _put_state(state)


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string of these characters is a TOML basic string


def render_config(mine: GitLabRunnerSettings, names: list[str], data_dir: str) -> str:
    """config.toml with a token placeholder per runner (the host fills them in)."""
    root = f"{data_dir}/gitlab-runner"
    return render_template(
        TEMPLATES / "config.toml.j2",
        concurrent=mine.gitlab_runner_concurrent,
        check_interval=mine.gitlab_runner_check_interval,
        listen_address=_toml(mine.gitlab_runner_listen_address),
        shutdown_timeout=mine.gitlab_runner_stop_timeout,
        url=_toml(mine.server_url),
        environment=", ".join(_toml(f"{k}={v}") for k, v in mine.gitlab_runner_environment.items()),
        runners=[
            {
                "name": _toml(name),
                "token": _toml(_PLACEHOLDER.format(name=name)),
                "builds_dir": _toml(f"{root}/builds/{name}"),
                "cache_dir": _toml(f"{root}/cache/{name}"),
            }
            for name in names
        ],
    )


@deploy("gitlab_runner", data_defaults=settings_defaults())
def gitlab_runner() -> None:
    """Install GitLab Runner and its runners (or, with none present, remove them) on the current host."""
    apply(host_settings())


def apply(settings: HostSettings) -> None:
    mine = settings.of(GitLabRunnerSettings)
    base = settings.of(BaseLayerSettings)
    if not mine.gitlab_runner_registrations:
        _teardown(base, reason="no gitlab_runner_registrations")
        return
    try:
        plan = _plan(mine)
        keyring = pinned_keyring(_fetch_key(mine.gitlab_runner_apt_key_url), mine.gitlab_runner_apt_key_fingerprint)
    except ValueError as error:
        raise PyinfraError(
            f"gitlab_runner_apt_key_url: the key at {mine.gitlab_runner_apt_key_url} is not the pinned one ({error}); "
            "check gitlab_runner_apt_key_fingerprint against GitLab's documentation"
        ) from None
    except RunnerCtlError as error:
        raise PyinfraError(str(error)) from None
    state = {name: i for name, i in plan.known.items() if name not in {r.name for r in plan.absent}}
    for runner in plan.present:
        if runner.id is not None:
            state[runner.name] = runner.id
    if not plan.present:
        if plan.api_work:
            python.call(name="Delete the absent runners in GitLab", function=_apply_in_gitlab, plan=plan, state=state)
        _teardown(base, reason="no registration is present")
        return
    _install(mine, base, plan, state, keyring)


def _install(
    mine: GitLabRunnerSettings, base: BaseLayerSettings, plan: _Plan, state: dict[str, int], keyring: bytes
) -> None:
    user, version = base.runner_user, package_version(mine.gitlab_runner_version)
    key_op = files.put(
        name=f"GitLab Runner repository key {mine.gitlab_runner_apt_key_fingerprint} in {KEYRING}",
        src=io.BytesIO(keyring),
        dest=KEYRING,
        user="root",
        group="root",
        mode="644",
    )
    source_op = files.put(
        name=f"apt source {SOURCE}",
        src=io.StringIO(
            render_template(
                TEMPLATES / "apt-source.list.j2", keyring=KEYRING, repo=mine.gitlab_runner_apt_repo, suite=SUITE
            )
        ),
        dest=SOURCE,
        mode="644",
    )
    pin_op = files.put(
        name=f"Pin GitLab Runner {version}",
        src=io.StringIO(render_template(TEMPLATES / "apt-pin.j2", version=version)),
        dest=PIN,
        mode="644",
    )
    apt.update(name="apt update (GitLab Runner source changed)", _if=any_changed(key_op, source_op, pin_op))
    packages_op = apt.packages(
        name=f"GitLab Runner {version}",
        packages=[f"{package}={version}" for package in PACKAGES],
        # The held packages change only here, to the pinned version.
        extra_install_args="--allow-change-held-packages",
    )
    held = host.get_fact(_Held)
    if not all(package in held for package in PACKAGES):
        server.shell(name="Hold GitLab Runner at the pinned version", commands=[f"apt-mark hold {' '.join(PACKAGES)}"])
    root = f"{base.data_dir}/gitlab-runner"
    files.directory(name=ETC, path=ETC, user=user, group=user, mode="700")
    files.directory(name=TOKENS, path=TOKENS, user="root", group="root", mode="700")
    for path in (root, f"{root}/builds", f"{root}/cache"):
        files.directory(name=path, path=path, user=user, group=user, mode="750")
    for runner in plan.present:
        if runner.token is not None:
            _put_token(runner.name, runner.token)
    if plan.api_work:
        python.call(name="Create, retag or delete runners in GitLab", function=_apply_in_gitlab, plan=plan, state=state)
    else:
        _put_state(state)
    for runner in plan.absent:
        files.file(name=f"Remove the token of {runner.name}", path=f"{TOKENS}/{runner.name}", present=False)
        files.directory(name=f"Remove {root}/builds/{runner.name}", path=f"{root}/builds/{runner.name}", present=False)
        files.directory(name=f"Remove {root}/cache/{runner.name}", path=f"{root}/cache/{runner.name}", present=False)
    template_op = files.put(
        name=f"{CONFIG_IN} (tokens as placeholders)",
        src=io.StringIO(render_config(mine, [r.name for r in plan.present], base.data_dir)),
        dest=CONFIG_IN,
        user="root",
        group="root",
        mode="600",
    )
    config_op = _config(name=f"{CONFIG} (0600 {user}, tokens filled in on the host)", user=user)
    dropin_op = files.put(
        name=f"systemd drop-in {DROPIN}: runs as {user}, stops gracefully",
        src=io.StringIO(
            render_template(
                TEMPLATES / "runner-ctl.conf.j2",
                user=user,
                config=CONFIG,
                workdir=root,
                stop_timeout=mine.gitlab_runner_stop_timeout,
            )
        ),
        dest=DROPIN,
        mode="644",
    )
    systemd.service(
        name="Restart GitLab Runner (package, config or unit changed)",
        service=UNIT,
        running=True,
        restarted=True,
        enabled=True,
        daemon_reload=True,
        _if=any_changed(packages_op, template_op, config_op, dropin_op),
    )
    systemd.service(name="GitLab Runner running and enabled", service=UNIT, running=True, enabled=True)


def _teardown(base: BaseLayerSettings, *, reason: str) -> None:
    """Nothing of this layer on the host: on a host that never had it, every step is a no-op."""
    held = host.get_fact(_Held)
    if any(package in held for package in PACKAGES):
        server.shell(name=f"GitLab Runner off ({reason}): unhold", commands=[f"apt-mark unhold {' '.join(PACKAGES)}"])
    apt.packages(name=f"GitLab Runner off ({reason}): remove the packages", packages=list(PACKAGES), present=False,
                 purge=True)  # fmt: skip
    dropin = files.file(name=f"GitLab Runner off: remove {DROPIN}", path=DROPIN, present=False)
    files.directory(name=f"GitLab Runner off: remove {DROPIN.rsplit('/', 1)[0]}", path=DROPIN.rsplit("/", 1)[0],
                    present=False)  # fmt: skip
    files.file(name=f"GitLab Runner off: remove /etc/systemd/system/{UNIT}", path=f"/etc/systemd/system/{UNIT}",
               present=False)  # fmt: skip
    systemd.daemon_reload(name="GitLab Runner off: systemd daemon-reload", _if=dropin.did_change)
    for path in (SOURCE, PIN, KEYRING):
        files.file(name=f"GitLab Runner off: remove {path}", path=path, present=False)
    for path in (ETC, f"{base.data_dir}/gitlab-runner", f"/home/{PACKAGE_USER}"):
        files.directory(name=f"GitLab Runner off: remove {path}", path=path, present=False)
    server.user(name=f"GitLab Runner off: remove the package's user {PACKAGE_USER}", user=PACKAGE_USER, present=False)
