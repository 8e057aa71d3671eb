"""BuildBuddy layer: Bazel's remote cache, remote execution and build event upload.

Writes ``/etc/bazel.d/buildbuddy.bazelrc`` (0644), which the Bazel layer's
``/etc/bazel.bazelrc`` try-imports, with only the flags the configured Bazel version
accepts (``runner_ctl.bazelflags``). The API key, from a secret reference resolved on the
operator's machine, goes only into ``/etc/bazel.d/buildbuddy-auth.bazelrc`` (0640
root:<runner_user>, written by ``layerkit.put_secret``: never in argv, never shown by
``--diff``), which ``buildbuddy.bazelrc`` try-imports.

With no key and no ``buildbuddy_unauthenticated`` (the default) the layer is off: it
removes both files, and its operations say so.

Group data keys (defaults and documentation in ``runner_ctl.layers.buildbuddy``):

+ buildbuddy_api_key: secret reference of the API key; None turns the layer off
+ buildbuddy_unauthenticated: a self-hosted endpoint without auth, no key
+ buildbuddy_endpoint: grpc(s):// or http(s):// endpoint (default BuildBuddy cloud)
+ buildbuddy_results_url / buildbuddy_bes: build event upload and its results link
+ buildbuddy_remote_cache / buildbuddy_remote_execution / buildbuddy_instance_name / buildbuddy_jobs
+ buildbuddy_remote_timeout / buildbuddy_compression / buildbuddy_download_outputs
+ buildbuddy_build_metadata: --build_metadata pairs (ROLE=CI)

Example:

.. code:: python

    from deploys.buildbuddy import buildbuddy

    buildbuddy()
"""

import io
from pathlib import Path

from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import files

from runner_ctl.bazelflags import flags_for
from runner_ctl.hostdata import HostSettings
from runner_ctl.layerkit import (
    SECRET_STAGING,
    host_settings,
    put_secret,
    render_template,
    resolve_host_secret,
    settings_defaults,
)
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.bazel import BazelSettings
from runner_ctl.layers.buildbuddy import BuildBuddySettings, check_api_key, is_grpc

__all__ = ["AUTH_NAME", "RC_DIR", "RC_NAME", "apply", "buildbuddy", "render_auth", "render_rc"]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "buildbuddy"
RC_DIR = "/etc/bazel.d"
RC_NAME = "buildbuddy.bazelrc"  # /etc/bazel.bazelrc (the Bazel layer) try-imports it by this name
AUTH_NAME = "buildbuddy-auth.bazelrc"


def render_rc(
    settings: BuildBuddySettings, *, bazel_version: str, runner_group: str, auth_file: str = f"{RC_DIR}/{AUTH_NAME}"
) -> str:
    """``buildbuddy.bazelrc`` for this Bazel version: only flags it accepts (bazelflags' table)."""
    return render_template(
        TEMPLATES / "buildbuddy.bazelrc.j2",
        s=settings,
        version=bazel_version,
        flags=flags_for(bazel_version),
        # Bazel compresses gRPC cache transfers only.
        compress=settings.buildbuddy_compression and is_grpc(settings.buildbuddy_endpoint),
        auth_file=auth_file,
        runner_group=runner_group,
    )


def render_auth(api_key: str, *, bazel_version: str) -> str:
    return render_template(TEMPLATES / "buildbuddy-auth.bazelrc.j2", flags=flags_for(bazel_version), api_key=api_key)


def _api_key(settings: BuildBuddySettings) -> str | None:
    """The resolved key, checked on the operator's machine before any operation is queued."""
    if settings.buildbuddy_api_key is None:
        return None
    if settings.buildbuddy_api_key.startswith("generated:"):
        # A random secret would never authenticate: BuildBuddy issues the key.
        raise PyinfraError(
            "buildbuddy_api_key: generated: makes up a random secret; expected env:NAME, file:PATH or cmd:COMMAND "
            "naming the key BuildBuddy issued"
        )
    key = resolve_host_secret(settings.buildbuddy_api_key, what="buildbuddy_api_key")
    try:
        check_api_key(key)
    except ValueError as error:
        raise PyinfraError(f"buildbuddy_api_key: {error}") from None
    return key


@deploy("buildbuddy", data_defaults=settings_defaults())
def buildbuddy() -> None:
    """Configure (or, with no key, remove) the BuildBuddy layer on the current host."""
    apply(host_settings(), rc_dir=RC_DIR)


def apply(settings: HostSettings, *, rc_dir: str) -> None:
    """The layer's operations, with its files in ``rc_dir`` (tests point it at a temporary directory)."""
    mine = settings.of(BuildBuddySettings)
    group = settings.of(BaseLayerSettings).runner_user
    version = settings.of(BazelSettings).bazel_version
    rc_file, auth_file = f"{rc_dir}/{RC_NAME}", f"{rc_dir}/{AUTH_NAME}"
    key = _api_key(mine)  # before anything is queued: a missing key source touches nothing
    if not mine.enabled:
        # Config first: no moment has a config that imports a key file already gone.
        files.file(name=f"BuildBuddy off (no buildbuddy_api_key): remove {rc_file}", path=rc_file, present=False)
        files.file(name=f"BuildBuddy off: remove {auth_file}", path=auth_file, present=False)
        # put_secret's root-only staging directory, empty between deploys; only the key used it.
        files.directory(
            name=f"BuildBuddy off: remove {rc_dir}/{SECRET_STAGING}", path=f"{rc_dir}/{SECRET_STAGING}", present=False
        )
        return
    files.directory(name=rc_dir, path=rc_dir, user="root", group="root", mode="755")
    if key is None:
        files.file(name=f"BuildBuddy without a key: remove {auth_file}", path=auth_file, present=False)
    else:
        # Key first: the config never imports a key file that an older deploy left.
        put_secret(
            name=f"BuildBuddy API key in {auth_file}",
            content=render_auth(key, bazel_version=version),
            dest=auth_file,
            user="root",
            group=group,
            mode="640",
        )
    files.put(
        name=f"BuildBuddy config {rc_file} for Bazel {version}",
        src=io.StringIO(render_rc(mine, bazel_version=version, runner_group=group, auth_file=auth_file)),
        dest=rc_file,
        user="root",
        group="root",
        mode="644",
    )
