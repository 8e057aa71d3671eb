"""``runner-ctl tools``: re-pin the tools of multitool.lock.json (bin/tofu reads it)."""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from runner_ctl.clikit import INTERRUPTED, check_http_url, exit_codes_epilog, fail, guard, stderr
from runner_ctl.paths import find_project_root
from runner_ctl.toolbump import OPENTOFU, bump

__all__ = ["tools_app"]

tools_app = typer.Typer(help="Pinned tools in multitool.lock.json (bin/tofu reads it).")


@tools_app.command(
    "bump",
    epilog=exit_codes_epilog(
        ("0", "the lockfile now pins VERSION (a warning says so when no verifier was installed)"),
        ("2", "an unknown tool, a bad flag, a version with no release, or a lockfile that cannot be read"),
        ("1", "a download failed, or the signature or a digest did not verify (nothing written)"),
        ("130", INTERRUPTED),
    ),
)
def tools_bump(
    tool: Annotated[str, typer.Argument(help="The tool to re-pin (supported: tofu).")],
    version: Annotated[str, typer.Argument(help="The release to pin, e.g. 1.12.6.")],
    lockfile: Annotated[
        Path | None, typer.Option(help="The lockfile to rewrite (default: multitool.lock.json in the checkout).")
    ] = None,
    release_url: Annotated[
        str | None, typer.Option(help="A mirror of the release downloads (the signature is still checked).")
    ] = None,
    gpg_key_url: Annotated[
        str | None, typer.Option(help="Where to fetch the signing key (its fingerprint is pinned in runner-ctl).")
    ] = None,
) -> None:
    """Re-pin TOOL at VERSION in multitool.lock.json from the release's signed SHA256SUMS.

    The signature is verified with cosign when it is installed, else gpg; with neither, the
    pins are written with a warning. Linux and macOS on x86_64 and arm64 are pinned.
    """
    if tool != OPENTOFU.tool:
        fail(f"runner-ctl tools bump knows only {OPENTOFU.tool!r}, not {tool!r}", 2)
    source = OPENTOFU
    if release_url is not None:
        source = dataclasses.replace(
            source,
            download_base=guard(lambda: check_http_url(release_url, "--release-url", example=OPENTOFU.download_base)),
        )
    if gpg_key_url is not None:
        source = dataclasses.replace(
            source,
            gpg_key_url=guard(lambda: check_http_url(gpg_key_url, "--gpg-key-url", example=OPENTOFU.gpg_key_url)),
        )
    target = lockfile or guard(find_project_root) / "multitool.lock.json"
    result = guard(lambda: bump(target, version, source=source))
    if result.verified_by == "none":
        stderr.print(
            "runner-ctl: warning: neither cosign nor gpg is installed, so the SHA256SUMS signature was NOT verified"
        )
    print(
        f"{tool} {result.version}: {len(result.binaries)} binaries pinned in {target} (signature: {result.verified_by})"
    )
