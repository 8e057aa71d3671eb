"""Bazel layer: a Bazel whose server outlives each CI job, with its caches on the data volume.

+ ``/usr/local/bin/bazel``: a wrapper that removes ``RUNNER_TRACKING_ID`` from the
  environment and execs the real Bazel (Debian's ``bazel-bootstrap``) or Bazelisk. The
  GitHub Actions runner kills every process carrying the job's ``RUNNER_TRACKING_ID`` at
  the end of the job; without the variable the Bazel server survives and the next job's
  build starts warm. ``BAZELISK_HOME`` defaults to the data volume.
+ Bazelisk (``bazel_source = "bazelisk"``) is downloaded on the operator's machine,
  checked against ``bazel_bazelisk_sha256`` for the host's architecture, and only then
  uploaded: a bad download never reaches the host.
+ ``/etc/bazel.bazelrc``: output user root, repository cache and optional disk cache on
  the data volume, ``--max_idle_secs``, and ``try-import`` of ``/etc/bazel.d/buildbuddy.bazelrc``
  and ``/etc/bazel.d/local.bazelrc``. Flags come from ``runner_ctl.bazelflags`` for
  ``bazel_version``, so every flag written is one that version accepts.
+ ``runner-ctl-bazel-prune.timer``: hourly, removes output bases unused for
  ``bazel_prune_unused_days`` and trims the caches above ``bazel_prune_threshold_percent``
  of the volume, never while a Bazel server uses them; it logs what it freed.

Group data keys (documented in ``runner_ctl.layers.bazel.BazelSettings``):

+ bazel_source, bazel_version: where Bazel comes from and which release the rc is for
+ bazel_bazelisk_version, bazel_bazelisk_sha256, bazel_bazelisk_url: the pinned Bazelisk
+ bazel_max_idle_secs: how long an idle server stays warm
+ bazel_disk_cache, bazel_disk_cache_max_size_gb, bazel_disk_cache_max_age_days
+ bazel_prune_unused_days, bazel_prune_threshold_percent: the disk bound
"""

import io
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import host
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, systemd

from runner_ctl.bazelflags import flags_for
from runner_ctl.layerkit import host_settings, render_template, settings_defaults
from runner_ctl.layers.base import BaseLayerSettings
from runner_ctl.layers.bazel import SPEC, BazelSettings
from runner_ctl.tools import Binary, ToolError, ensure_cached

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "bazel"
LIBEXEC = "/usr/local/libexec/runner-ctl"
WRAPPER = "/usr/local/bin/bazel"
BAZELRC = "/etc/bazel.bazelrc"
BAZELRC_DIR = "/etc/bazel.d"
PRUNE_SCRIPT = f"{LIBEXEC}/bazel-prune"
PRUNE_UNIT = "runner-ctl-bazel-prune"
# Debian's /usr/bin/bazel is a version-picking script; bazel-4 is the Bazel client itself.
APT_BAZEL = "/usr/bin/bazel-4"


@dataclass(frozen=True)
class BazelPaths:
    """Where the layer keeps Bazel's state: all on the data volume."""

    root: str
    output_user_root: str
    repository_cache: str
    disk_cache: str
    bazelisk_home: str

    @classmethod
    def under(cls, data_dir: str) -> "BazelPaths":
        root = f"{data_dir}/bazel"
        return cls(root, f"{root}/output", f"{root}/repository-cache", f"{root}/disk-cache", f"{root}/bazelisk")


def _real_bazel(settings: BazelSettings) -> str:
    """Install Bazel or Bazelisk; the path of the binary the wrapper execs."""
    if settings.bazel_source == "apt":
        apt.packages(name="Install Bazel (bazel-bootstrap)", packages=list(SPEC.apt_packages), no_recommends=True)
        return APT_BAZEL
    arch = host.get_fact(Arch)
    digest = settings.bazel_bazelisk_sha256.get(arch)
    if digest is None:
        raise PyinfraError(
            f"{host.name}: bazel_bazelisk_sha256 has no checksum for this host's architecture {arch!r}; "
            f"add one (e.g. {{'{arch}': '<64 hex digits>'}})"
        )
    name = f"bazelisk-{settings.bazel_bazelisk_version}"
    binary = Binary(
        tool="bazelisk",
        kind="file",
        url=settings.bazelisk_url(arch),
        sha256=digest,
        os="linux",
        cpu=arch,
        file=name,
        type="",
    )
    try:
        verified = ensure_cached(binary)
    except ToolError as error:
        raise PyinfraError(f"{host.name}: bazel_bazelisk_url: {error}") from None
    files.put(name=f"Install {name} (sha256 verified)", src=str(verified), dest=f"{LIBEXEC}/{name}", mode="755")
    return f"{LIBEXEC}/{name}"


def _directories(paths: BazelPaths, settings: BazelSettings, runner: str) -> None:
    wanted = [paths.root, paths.output_user_root, paths.repository_cache]
    if settings.bazel_disk_cache:
        wanted.append(paths.disk_cache)
    if settings.bazel_source == "bazelisk":
        wanted.append(paths.bazelisk_home)
    # runner's alone: Bazel logs every rc option (a BuildBuddy API key among them) into
    # java.log in the output base, and the caches hold build outputs.
    for path in wanted:
        files.directory(name=f"Bazel directory {path}", path=path, user=runner, group=runner, mode="700")


def _put(name: str, template: str, dest: str, mode: str, **values: object) -> None:
    files.put(
        name=name,
        src=io.StringIO(render_template(TEMPLATES / template, **values)),
        dest=dest,
        user="root",
        group="root",
        mode=mode,
    )


def _prune_timer(paths: BazelPaths, settings: BazelSettings, data_dir: str) -> None:
    _put(
        "Bazel prune script",
        "bazel-prune.sh.j2",
        PRUNE_SCRIPT,
        "755",
        output_user_root=paths.output_user_root,
        repository_cache=paths.repository_cache,
        disk_cache=paths.disk_cache if settings.bazel_disk_cache else "",
        data_dir=data_dir,
        unused_days=settings.bazel_prune_unused_days,
        threshold=settings.bazel_prune_threshold_percent,
    )
    units = [
        files.put(
            name=f"{PRUNE_UNIT}.{kind}",
            src=io.StringIO(render_template(TEMPLATES / f"{PRUNE_UNIT}.{kind}.j2", data_dir=data_dir)),
            dest=f"/etc/systemd/system/{PRUNE_UNIT}.{kind}",
            user="root",
            group="root",
            mode="644",
        )
        for kind in ("service", "timer")
    ]
    systemd.service(
        name="Run the Bazel prune timer",
        service=f"{PRUNE_UNIT}.timer",
        running=True,
        enabled=True,
        daemon_reload=any(unit.will_change for unit in units),
    )


@deploy("bazel", data_defaults=settings_defaults())
def bazel() -> None:
    """Configure the Bazel layer on the current host."""
    every = host_settings()
    base = every.of(BaseLayerSettings)
    settings = every.of(BazelSettings)
    paths = BazelPaths.under(base.data_dir)
    files.directory(name=LIBEXEC, path=LIBEXEC, user="root", group="root", mode="755")
    real = _real_bazel(settings)
    _directories(paths, settings, base.runner_user)
    _put(
        "Bazel wrapper that keeps the server alive after a CI job",
        "bazel-wrapper.sh.j2",
        WRAPPER,
        "755",
        source=settings.bazel_source,
        real_bazel=real,
        bazelisk_home=paths.bazelisk_home,
        version=settings.bazel_version,
    )
    files.directory(name=BAZELRC_DIR, path=BAZELRC_DIR, user="root", group="root", mode="755")
    _put(
        "System bazelrc",
        "bazel.bazelrc.j2",
        BAZELRC,
        "644",
        version=settings.bazel_version,
        flags=flags_for(settings.bazel_version),
        output_user_root=paths.output_user_root,
        max_idle_secs=settings.bazel_max_idle_secs,
        repository_cache=paths.repository_cache,
        disk_cache=paths.disk_cache if settings.bazel_disk_cache else "",
        disk_cache_max_size_gb=settings.bazel_disk_cache_max_size_gb,
        disk_cache_max_age_days=settings.bazel_disk_cache_max_age_days,
    )
    _prune_timer(paths, settings, base.data_dir)
