"""A stand-in for a GitHub Actions runner release tarball (not the real runner).

``actions-runner-linux-<arch>-<version>.tar.gz`` with the real release's layout — ``config.sh``,
``run.sh``, ``runsvc.sh`` (the copy ``svc.sh install`` puts beside ``config.sh``) and
``bin/Runner.Listener`` — but every program is a small bash script, so it runs on a bare
Debian host with no .NET and no network beyond the test host's link to the controller.

What it does as the real runner does (actions/runner: ``CommandSettings.cs``,
``ConfigurationManager.cs``, ``Validators.cs``, ``layoutroot/config.sh``,
``layoutbin/runsvc.sh``):

- ``config.sh`` refuses root (unless ``RUNNER_ALLOW_RUNASROOT``), then runs
  ``bin/Runner.Listener configure`` (or ``remove``);
- arguments come from the command line or from ``ACTIONS_RUNNER_INPUT_<NAME>`` environment
  variables (name matched case-insensitively, value trimmed, each removed from the environment
  once read); a command-line argument wins over the environment; an unknown argument is refused;
- ``--unattended`` with a missing ``url`` or ``token`` fails with "Invalid configuration
  provided for <arg>. Terminating unattended configuration."; ``--url`` must be http(s);
  each label is at most 256 characters; an already configured runner is refused;
- it registers through ``POST <api>/actions/runner-registration`` with ``Authorization:
  RemoteAuth <token>``, the API being ``<scheme>://<host>/api/v3`` for a GitHub Enterprise
  Server URL (``--url`` of any host but github.com), and writes ``.runner`` (camelCase JSON:
  agentId, agentName, poolName, serverUrl, gitHubUrl, workFolder) and ``.credentials`` (0600);
- ``config.sh remove`` deregisters with a remove token and deletes both files;
- ``run.sh`` / ``runsvc.sh`` keep a listener running until SIGTERM or SIGINT, then exit 0;
  ``bin/Runner.Listener --version`` prints the version.

Where it departs, to be a stricter test: it never accepts ``--token`` on the command line
(the token must come from ``ACTIONS_RUNNER_INPUT_TOKEN``; an argument list is readable by
every user of the host), it only supports ``--unattended`` (no prompts), it speaks plain HTTP
only (the stand-in API), and the handshake body carries name, labels and group directly
instead of continuing against the Actions service.
"""

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

__all__ = ["DOWNLOAD_PATH", "Release", "build_release", "release_name"]

DOWNLOAD_PATH = "/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"

_CONFIG_SH = """#!/bin/bash
# Stand-in of the GitHub Actions runner's config.sh (runner-ctl tests; not the real runner).
user_id=$(id -u)
if [ "$user_id" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT:-}" ]; then
    echo "Must not run with sudo"
    exit 1
fi
cd "$(dirname "$0")" || exit 1
if [ "${1:-}" = "remove" ]; then
    shift
    exec ./bin/Runner.Listener remove "$@"
fi
exec ./bin/Runner.Listener configure "$@"
"""

_RUN_SH = """#!/bin/bash
# Stand-in of the GitHub Actions runner's run.sh (runner-ctl tests; not the real runner).
cd "$(dirname "$0")" || exit 1
exec ./bin/Runner.Listener run "$@"
"""

_RUNSVC_SH = """#!/bin/bash
# Stand-in of the GitHub Actions runner's runsvc.sh, as svc.sh installs it. The real one turns
# SIGTERM into SIGINT for its node child; a background job of a script ignores SIGINT, so this
# one passes SIGTERM on.
trap 'kill -TERM $PID' TERM INT
./run.sh &
PID=$!
wait $PID
trap - TERM INT
wait $PID
"""

_LISTENER = r"""#!/bin/bash
# Stand-in of the GitHub Actions runner's bin/Runner.Listener (runner-ctl tests; not the real runner).
export LC_ALL=C
VERSION="@VERSION@"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

fail() { echo "Error: $*" >&2; exit 1; }

# ACTIONS_RUNNER_INPUT_<NAME>: read (trimmed, names case-insensitive), then removed from the environment.
declare -A ENV_ARGS=()
for var in $(compgen -e); do
    upper="${var^^}"
    if [[ "$upper" == ACTIONS_RUNNER_INPUT_* ]]; then
        value="${!var}"
        value="${value#"${value%%[![:space:]]*}"}"
        value="${value%"${value##*[![:space:]]}"}"
        name="${upper#ACTIONS_RUNNER_INPUT_}"
        [ -n "$value" ] && ENV_ARGS["${name,,}"]="$value"
        unset "$var"
    fi
done

declare -A ARGS=()
UNATTENDED=0
REPLACE=0
COMMAND="${1:-run}"
shift || true
while [ $# -gt 0 ]; do
    case "$1" in
        --unattended) UNATTENDED=1 ;;
        --replace) REPLACE=1 ;;
        --token)
            fail "this stand-in refuses --token on the command line (any user can read an argument list); set ACTIONS_RUNNER_INPUT_TOKEN" ;;
        --url|--name|--labels|--work|--runnergroup)
            [ $# -ge 2 ] || fail "missing value for $1"
            ARGS["${1#--}"]="$2"
            shift ;;
        --version) echo "$VERSION"; exit 0 ;;
        *) fail "Unrecognized command-line input arguments for command $COMMAND: '$1'. For usage refer to: .\\config.cmd --help or ./config.sh --help" ;;
    esac
    shift
done

arg() {  # the command line first, then the environment
    if [ -n "${ARGS[$1]:-}" ]; then printf '%s' "${ARGS[$1]}"; else printf '%s' "${ENV_ARGS[$1]:-}"; fi
}

required() {
    local value
    value="$(arg "$1")"
    [ -n "$value" ] || fail "Invalid configuration provided for $1. Terminating unattended configuration."
    printf '%s' "$value"
}

json_str() {
    local s="${1//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

json_field() {  # the first string or number value of "key" in a JSON text
    sed -n "s/.*\"$1\": *\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" <<<"$2" | head -n 1
}

# POST $2 (JSON) to <api>/actions/runner-registration with RemoteAuth $1; sets STATUS and BODY.
handshake() {
    local url="$GITHUB_URL" scheme rest hostport host port api_path response
    scheme="${url%%://*}"
    rest="${url#*://}"
    hostport="${rest%%/*}"
    [ "$scheme" = "http" ] || fail "this stand-in speaks plain http only, not $scheme"
    host="${hostport%:*}"
    port="${hostport##*:}"
    [ "$port" = "$hostport" ] && port=80
    api_path="/api/v3/actions/runner-registration"
    exec 3<>"/dev/tcp/$host/$port" || fail "cannot connect to $hostport"
    printf 'POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: RemoteAuth %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
        "$api_path" "$hostport" "$1" "${#2}" "$2" >&3
    response="$(timeout 60 cat <&3)"
    exec 3<&-
    STATUS="$(head -n 1 <<<"$response" | cut -d ' ' -f 2)"
    BODY="${response#*$'\r\n\r\n'}"
}

configure() {
    [ "$UNATTENDED" = 1 ] || fail "this stand-in supports only --unattended configuration"
    if [ -f .runner ]; then
        fail "Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.cmd remove' or './config.sh remove' first."
    fi
    GITHUB_URL="$(required url)" || exit 1
    case "$GITHUB_URL" in
        http://?*|https://?*) ;;
        *) fail "Invalid configuration provided for url. Terminating unattended configuration." ;;
    esac
    local token name labels work group body label first=1
    token="$(required token)" || exit 1
    name="$(arg name)"
    [ -n "$name" ] || name="$(hostname)"
    labels="$(arg labels)"
    work="$(arg work)"
    [ -n "$work" ] || work="_work"
    group="$(arg runnergroup)"
    local json_labels="["
    IFS=',' read -ra parts <<<"$labels"
    for label in "${parts[@]}"; do
        [ -n "$label" ] || continue
        [ "${#label}" -le 256 ] || fail "Invalid configuration provided for labels. Terminating unattended configuration."
        [ "$first" = 1 ] || json_labels+=","
        json_labels+="$(json_str "$label")"
        first=0
    done
    json_labels+="]"
    body="{\"url\":$(json_str "$GITHUB_URL"),\"runner_event\":\"register\",\"name\":$(json_str "$name"),\"labels\":$json_labels,\"runner_group\":$(json_str "$group"),\"replace\":$([ "$REPLACE" = 1 ] && echo true || echo false)}"
    echo "--------------------------------------------------------------------------------"
    echo "|   GitHub Actions runner $VERSION (runner-ctl stand-in)"
    echo "--------------------------------------------------------------------------------"
    handshake "$token" "$body"
    if [ "$STATUS" != 200 ]; then
        fail "registration failed (HTTP $STATUS): $(json_field message "$BODY")"
    fi
    local id pool server
    id="$(json_field id "$BODY")"
    pool="$(json_field pool_name "$BODY")"
    server="$(json_field url "$BODY")"
    [ -n "$id" ] || fail "the registration answer has no runner id"
    umask 077
    printf '{\n  "scheme": "OAuth",\n  "data": {\n    "clientId": "stand-in-%s",\n    "authorizationUrl": %s,\n    "requireFipsCryptography": "False"\n  }\n}\n' \
        "$id" "$(json_str "$server/_apis/oauth2/token")" > .credentials
    umask 022
    printf '{\n  "agentId": %s,\n  "agentName": %s,\n  "poolId": 1,\n  "poolName": %s,\n  "serverUrl": %s,\n  "gitHubUrl": %s,\n  "workFolder": %s\n}\n' \
        "$id" "$(json_str "$name")" "$(json_str "${pool:-Default}")" "$(json_str "$server")" "$(json_str "$GITHUB_URL")" "$(json_str "$work")" > .runner
    mkdir -p "$work"
    echo "√ Runner successfully added"
    echo "√ Runner connection is good"
    echo "√ Settings Saved."
}

remove() {
    if [ ! -f .runner ]; then
        echo "Does not exist. Skipping Removing runner from the server"
        return 0
    fi
    GITHUB_URL="$(json_field gitHubUrl "$(cat .runner)")"
    local token id
    token="$(arg token)"
    [ -n "$token" ] || fail "Invalid configuration provided for token. Terminating unattended configuration."
    id="$(json_field agentId "$(cat .runner)")"
    handshake "$token" "{\"url\":$(json_str "$GITHUB_URL"),\"runner_event\":\"remove\",\"runner_id\":$id}"
    [ "$STATUS" = 200 ] || fail "removing the runner failed (HTTP $STATUS): $(json_field message "$BODY")"
    echo "√ Runner removed successfully"
    rm -f .credentials && echo "√ Removed .credentials"
    rm -f .runner && echo "√ Removed .runner"
}

run() {
    if [ ! -f .runner ] || [ ! -f .credentials ]; then
        fail "Not configured. Run config.(sh/cmd) to configure the runner."
    fi
    local child=""
    trap 'echo "Exiting..."; [ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
    echo "√ Connected to GitHub"
    echo "Current runner version: '$VERSION'"
    echo "Listening for Jobs"
    while :; do
        sleep 3600 &
        child=$!
        wait "$child"
    done
}

case "$COMMAND" in
    --version) echo "$VERSION" ;;
    configure) configure ;;
    remove) remove ;;
    run) run ;;
    *) fail "Unrecognized command-line input arguments: '$COMMAND'. For usage refer to: .\\config.cmd --help or ./config.sh --help" ;;
esac
"""  # noqa: E501 - a bash script whose messages quote the real runner's


@dataclass(frozen=True)
class Release:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def release_name(version: str, arch: str = "x64") -> str:
    return f"actions-runner-linux-{arch}-{version}.tar.gz"


def build_release(version: str, arch: str = "x64") -> Release:
    """The stand-in tarball for ``version``; the same bytes every time (a stable sha256)."""
    members = {
        "config.sh": _CONFIG_SH,
        "run.sh": _RUN_SH,
        "runsvc.sh": _RUNSVC_SH,
        "bin/Runner.Listener": _LISTENER.replace("@VERSION@", version),
    }
    raw = io.BytesIO()
    # mtime 0 in the gzip header and in every member: identical input, identical bytes.
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("./bin")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(directory)
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{path}")
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return Release(release_name(version, arch), gzip.compress(raw.getvalue(), mtime=0))
