"""``runner-ctl tools bump tofu VERSION``: re-pin multitool.lock.json from a release's SHA256SUMS.

The digests come from the release's own ``tofu_<version>_SHA256SUMS``, whose signature is
checked before anything is written: with cosign (keyless; OpenTofu's release workflow
identity pinned here) when it is installed, else with gpg (OpenTofu's signing key, its
fingerprint pinned here), else the pins are written with a loud warning. The lockfile is
replaced atomically, and other tools in it are kept as they are.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runner_ctl._proc import last_line, run_unchecked
from runner_ctl.errors import ConfigError, ProxyConfigError, RunnerCtlError
from runner_ctl.paths import open_regular
from runner_ctl.tools import LockfileError, load_lockfile

__all__ = ["OPENTOFU", "BumpResult", "ReleaseSource", "SignatureError", "bump"]

VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
SUMS_LINE = re.compile(r"^([0-9a-f]{64})\s+\*?(\S+)$")
TIMEOUT = httpx.Timeout(30.0)
# rules_multitool's (os, cpu) → the Go names in OpenTofu's asset file names.
PLATFORMS = (("linux", "x86_64", "linux_amd64"), ("linux", "arm64", "linux_arm64"),
             ("macos", "x86_64", "darwin_amd64"), ("macos", "arm64", "darwin_arm64"))  # fmt: skip


class SignatureError(RunnerCtlError):
    """The SHA256SUMS signature did not verify: nothing is written."""

    exit_code = 1


@dataclass(frozen=True)
class ReleaseSource:
    """Where a tool's releases live and who must have signed them."""

    tool: str
    download_base: str  # {base}/v{version}/{tool}_{version}_SHA256SUMS
    gpg_key_url: str
    gpg_fingerprint: str  # the primary key's, upper-case hex, no spaces
    cosign_identity: str  # format() with major, minor
    cosign_issuer: str

    def asset(self, version: str, name: str) -> str:
        return f"{self.download_base.rstrip('/')}/v{version}/{name}"


OPENTOFU = ReleaseSource(
    tool="tofu",
    download_base="https://github.com/opentofu/opentofu/releases/download",
    # OpenTofu's published signing key and its fingerprint (opentofu.org, "Standalone" install docs).
    gpg_key_url="https://get.opentofu.org/opentofu.asc",
    gpg_fingerprint="E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80",
    # Releases are signed keylessly by the release workflow on the v<major>.<minor> branch.
    cosign_identity="https://github.com/opentofu/opentofu/.github/workflows/release.yml@refs/heads/v{major}.{minor}",
    cosign_issuer="https://token.actions.githubusercontent.com",
)


@dataclass(frozen=True)
class BumpResult:
    version: str
    verified_by: str  # "cosign", "gpg" or "none"
    binaries: list[dict[str, str]]


def _get(client: httpx.Client, url: str, what: str) -> bytes:
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise RunnerCtlError(f"cannot fetch {what} from {url} ({error}); check the network or --release-url") from None
    if response.status_code == 404:
        raise ConfigError(f"{what} not found at {url}; check the version (e.g. 1.12.6) or --release-url")
    if response.status_code != 200:
        raise RunnerCtlError(f"fetching {what} from {url} answered HTTP {response.status_code}")
    return response.content


def parse_sums(text: str, source: ReleaseSource, version: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = SUMS_LINE.match(line.strip())
        if match:
            sums[match.group(2)] = match.group(1)
    missing = [
        f"{source.tool}_{version}_{goname}.zip"
        for _, _, goname in PLATFORMS
        if f"{source.tool}_{version}_{goname}.zip" not in sums
    ]
    if missing:
        raise ConfigError(f"the release's SHA256SUMS lists no {', '.join(missing)}; is {version} a full release?")
    return sums


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="runner-ctl-bump-") as tmp:
        Path(tmp).chmod(0o700)
        yield Path(tmp)


def _verify_cosign(client: httpx.Client, source: ReleaseSource, version: str, sums: Path) -> None:
    major, minor = version.split(".")[:2]
    name = f"{source.tool}_{version}_SHA256SUMS"
    signature, certificate = sums.parent / f"{name}.sig", sums.parent / f"{name}.pem"
    signature.write_bytes(_get(client, source.asset(version, f"{name}.sig"), "the cosign signature"))
    certificate.write_bytes(_get(client, source.asset(version, f"{name}.pem"), "the cosign certificate"))
    # Alphas and betas are signed from main, releases from their v<major>.<minor> branch.
    identity = source.cosign_identity.format(major=major, minor=minor)
    if "-" in version:
        identity = identity.rsplit("@", 1)[0] + "@refs/heads/main"
    result = run_unchecked(
        ["cosign", "verify-blob", "--certificate-identity", identity, "--certificate-oidc-issuer",
         source.cosign_issuer, "--signature", str(signature), "--certificate", str(certificate), str(sums)],
        what=f"verifying {name} with cosign", timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise SignatureError(f"cosign refused the signature of {name} ({last_line(result)}); nothing was written")


def _verify_gpg(client: httpx.Client, source: ReleaseSource, version: str, sums: Path) -> None:
    name = f"{source.tool}_{version}_SHA256SUMS"
    home = sums.parent / "gnupg"
    home.mkdir(mode=0o700)
    key = sums.parent / "signing-key.asc"
    key.write_bytes(_get(client, source.gpg_key_url, "the signing key"))
    signature = sums.parent / f"{name}.gpgsig"
    signature.write_bytes(_get(client, source.asset(version, f"{name}.gpgsig"), "the gpg signature"))
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args: str) -> subprocess.CompletedProcess[str]:
        return run_unchecked(
            ["gpg", "--batch", "--no-tty", "--status-fd", "1", *args],
            what=f"verifying {name} with gpg",
            timeout=60,
            env=env,
        )

    gpg("--import", str(key))
    # Trust comes from the pinned fingerprint, not from whatever the key URL served.
    verified = gpg("--verify", str(signature), str(sums))
    primaries = [
        line.split()[-1].upper() for line in verified.stdout.splitlines() if line.startswith("[GNUPG:] VALIDSIG ")
    ]
    if verified.returncode != 0 or source.gpg_fingerprint.upper() not in primaries:
        signer = ", ".join(primaries) or "no valid signature"
        raise SignatureError(
            f"{name} is not signed by {source.tool}'s release key {source.gpg_fingerprint} ({signer}); "
            "nothing was written"
        )


def _read_lockfile(lockfile: Path) -> dict[str, Any]:
    """The lockfile's document ({} if there is none yet); read before anything is fetched."""
    if not lockfile.exists() and not lockfile.is_symlink():
        return {}
    with open_regular(lockfile, "--lockfile") as handle:
        raw = handle.read()
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{lockfile} is not UTF-8 text; fix or remove it first") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{lockfile} is not valid JSON (line {error.lineno}: {error.msg}); fix or remove it first"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{lockfile}: expected an object of tools at the top level")
    return document


def _rewrite(lockfile: Path, document: dict[str, Any], tool: str, binaries: list[dict[str, str]]) -> None:
    document.setdefault(
        "$schema", "https://raw.githubusercontent.com/theoremlp/rules_multitool/main/lockfile.schema.json"
    )
    document[tool] = {"binaries": binaries}
    staged = lockfile.with_name(f".{lockfile.name}.{os.getpid()}.tmp")
    try:
        staged.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        load_lockfile(staged)  # never install a lockfile bin/tofu would refuse
        staged.replace(lockfile)
    except OSError as error:
        raise ConfigError(f"cannot write {lockfile} ({error.strerror}); check its directory's permissions") from None
    except LockfileError as error:
        raise RunnerCtlError(f"the new lockfile would be invalid ({error}); nothing was written") from None
    finally:
        staged.unlink(missing_ok=True)


def bump(lockfile: Path, version: str, *, source: ReleaseSource = OPENTOFU, verifier: str = "auto") -> BumpResult:
    """Pin ``source.tool`` at ``version`` in ``lockfile`` for linux/macos on x86_64/arm64."""
    version = version.removeprefix("v")
    if not VERSION_PATTERN.fullmatch(version):
        raise ConfigError(f"version {version!r} is not a release version like 1.12.6")
    document = _read_lockfile(lockfile)
    if verifier == "auto":
        verifier = "cosign" if shutil.which("cosign") else "gpg" if shutil.which("gpg") else "none"
    name = f"{source.tool}_{version}_SHA256SUMS"
    try:
        http = httpx.Client(timeout=TIMEOUT, follow_redirects=True, trust_env=True)
    except httpx.InvalidURL:  # the release URLs are checked already: only a proxy variable is left
        raise ProxyConfigError from None
    with http as client, _scratch() as scratch:
        sums_bytes = _get(client, source.asset(version, name), name)
        sums_file = scratch / name
        sums_file.write_bytes(sums_bytes)
        if verifier == "cosign":
            _verify_cosign(client, source, version, sums_file)
        elif verifier == "gpg":
            _verify_gpg(client, source, version, sums_file)
        sums = parse_sums(sums_bytes.decode("utf-8", errors="replace"), source, version)
    binaries = [
        {
            "kind": "archive",
            "url": source.asset(version, f"{source.tool}_{version}_{goname}.zip"),
            "file": source.tool,
            "sha256": sums[f"{source.tool}_{version}_{goname}.zip"],
            "os": os_name,
            "cpu": cpu,
            "type": "zip",
        }
        for os_name, cpu, goname in PLATFORMS
    ]
    _rewrite(lockfile, document, source.tool, binaries)
    return BumpResult(version=version, verified_by=verifier, binaries=binaries)
