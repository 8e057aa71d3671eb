"""The JSON contracts: the JSON lines the CLI prints for scripts and CI, as pydantic models.

Four commands print one JSON document for a machine to read:

- ``runner-ctl rehearse --json``: :class:`RehearseJson`;
- ``runner-ctl deploy ... --json``: :class:`DeployJson`;
- ``runner-ctl latency report --format json``: :class:`LatencyReportJson`;
- ``runner-ctl runners prune --json``: :class:`RunnersPruneJson`.

Every field of every model says what it means, its unit, and when it is null. The reference
page docs/reference/json.md is generated from these models (``CONTRACTS`` lists them, in the
page's order), and tests/test_contracts.py validates the commands' real output against them:
``extra="forbid"`` makes a key the model does not document fail, and a required key that is
missing fails too. A producer that changes its output therefore changes its model, and the
page with it.

The producers (rehearse.RehearsalReport.to_json, serial_deploy.flow.DeployResult.to_json,
latency.report.build_report, runners.command._prune) build plain dicts; these models describe
them and are not used to print them. Nothing here imports an optional dependency.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONTRACTS",
    "ApiCallsJson",
    "CheckCountsJson",
    "Contract",
    "DeployJson",
    "DeployRunJson",
    "ExcludedJobsJson",
    "HourOfDayJson",
    "KeptRunnerJson",
    "LabelSetJson",
    "LatencyReportJson",
    "MissingRunsJson",
    "OverallJson",
    "QueueStatsJson",
    "RecommendationJson",
    "RehearseJson",
    "RunnersPruneJson",
    "ShortStatsJson",
    "TfvarsJson",
    "WindowJson",
]

# ---- runner-ctl rehearse --json ------------------------------------------------------------------

RehearsalStep = Literal[
    "validate", "boot", "stand-ins", "first deploy", "host checks", "fleet checks", "second deploy", "teardown"
]


class DeployRunJson(BaseModel):
    """One pyinfra run of the rehearsed deploy, counted from pyinfra's own ``--json`` results.

    A step that did not run (the rehearsal failed before it) reports zeros.
    """

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(
        description="Wall-clock seconds the pyinfra run took, rounded to 0.01 s; 0.0 when it did not run."
    )
    operations: int = Field(
        description="Host-operations pyinfra executed: each operation counted once per host it ran on "
        "(over the whole fleet with `--hosts N`); 0 when it did not run."
    )
    changed: int = Field(
        description="How many of those host-operations changed something. The second deploy must report 0 "
        "(the deploy is idempotent), or the rehearsal fails at `second deploy`."
    )


class CheckCountsJson(BaseModel):
    """Counts of a pytest check suite run over SSH (tests/host or tests/fleet), read from its JUnit report.

    A suite that did not run reports zeros.
    """

    model_config = ConfigDict(extra="forbid")

    passed: int = Field(
        description="Checks that passed (skipped checks are not counted); 0 when the suite did not run."
    )
    failed: int = Field(
        description="Checks that failed or errored; any failure fails the rehearsal at that step. "
        "0 when the suite did not run."
    )


class RehearseJson(BaseModel):
    """The last line of ``runner-ctl rehearse --json``: what the rehearsal did and where it stopped."""

    model_config = ConfigDict(extra="forbid")

    ok: bool = Field(
        description="True only when every step passed (the command then exits 0); false otherwise (exit 1, "
        "or 2 when the group data or the flags were refused before any host booted)."
    )
    layers: list[str] = Field(
        description="The layers deployed, in order: the group data's `layers` (e.g. base, bazel, buildbuddy, "
        "github_runner, gitlab_runner, deploy_lock). Empty when validation failed."
    )
    first_run: DeployRunJson = Field(
        description="The first deploy of the fresh host(s). Zeros when the rehearsal stopped before it."
    )
    second_run: DeployRunJson = Field(
        description="The same deploy run again, which must change nothing (`changed` 0). Zeros when the "
        "rehearsal stopped before it."
    )
    checks: CheckCountsJson = Field(
        description="The host checks (tests/host, testinfra over SSH), summed over every host of a fleet. Zeros "
        "when the rehearsal stopped before them."
    )
    host: str | None = Field(
        description="The first (with one host, the only) test host's name, e.g. `rh1`; null when no host booted."
    )
    hosts: list[str] = Field(
        description="Every test host's name, in inventory order (one name without `--hosts`); empty when no host "
        "booted."
    )
    fleet_checks: CheckCountsJson = Field(
        description="The fleet checks (tests/fleet), run once for a fleet of more than one host (`--hosts N`). "
        "Zeros with one host, or when the rehearsal stopped before them."
    )
    kept: bool = Field(
        description="True when the host(s) were left running (`--keep`; reach one with `runner-ctl testhost ssh "
        "NAME`); false when they were torn down or none booted."
    )
    failed_step: RehearsalStep | None = Field(
        description="The step that failed: `validate` (group data or flags refused, nothing touched), `boot`, "
        "`stand-ins`, `first deploy`, `host checks`, `fleet checks`, `second deploy` or `teardown`. "
        "Null when the rehearsal passed."
    )
    error: str | None = Field(
        description="Why that step failed, one line (a teardown that also failed is appended to it). Null when the "
        "rehearsal passed."
    )
    logs: str | None = Field(
        description="The directory holding each step's logs, "
        "`~/.cache/runner-ctl/rehearse/<time>-<host>/` (under `$RUNNER_CTL_CACHE_DIR` when set); "
        "null when the rehearsal stopped before its hosts had booted."
    )
    standins: list[str] = Field(
        description="One sentence per stand-in the rehearsal started for a layer whose outside world cannot be "
        "reached from here (GitHub's and GitLab's APIs, the runner releases and packages); empty when no "
        "deployed layer needs one, or the rehearsal stopped before they started."
    )


# ---- runner-ctl deploy --json ---------------------------------------------------------------------

DeployStatus = Literal[
    "succeeded",
    "failed",
    "skipped_stale",
    "superseded",
    "refused",
    "timeout",
    "lease_lost",
    "withdrawn",
    "cancelled",
]


class DeployJson(BaseModel):
    """The last line of ``runner-ctl deploy ... --json``: how this deploy request ended."""

    model_config = ConfigDict(extra="forbid")

    env: str = Field(description="The environment deployed to (`--env`), e.g. `production`.")
    commit: str = Field(
        description="The full commit hash `--commit` resolved to in `--repo-dir` (what the lock service recorded)."
    )
    status: DeployStatus = Field(
        description="How it ended: `succeeded` (COMMAND exited 0); `failed` (COMMAND exited non-zero or could not "
        "start); `skipped_stale` (an ancestor of the last successfully deployed commit: not run); `superseded` "
        "(queue policy `latest` and a descendant is queued behind it: not run); `refused` (diverged from the last "
        "deployed commit, without `--allow-rollback`, or its history could not be read); `timeout` "
        "(`--wait-timeout` ran out in the queue); `lease_lost` (the lease expired or a whole TTL passed without a "
        "successful renewal: never counted as deployed); `withdrawn` (a signal before the grant: it left the "
        "queue); `cancelled` (a signal after the grant)."
    )
    deploy_id: int | None = Field(
        description="The lock service's request id (`RUNNER_CTL_DEPLOY_ID`; find it in `runner-ctl deploy "
        "history`). Null only when a signal arrived before the request was sent."
    )
    fencing_token: int | None = Field(
        description="The fencing token of the grant (`RUNNER_CTL_FENCING_TOKEN`): it strictly increases per "
        "environment, so downstream systems can reject a stale writer. Null when this deploy never acted under a "
        "grant: `timeout`, `withdrawn`, `cancelled` by a signal while still queued, or `lease_lost` while queued."
    )
    previous_commit: str | None = Field(
        description="The last successfully deployed commit of the environment at the grant "
        "(`RUNNER_CTL_PREVIOUS_COMMIT`), against which the stale guard judged this one. Null when nothing was "
        "deployed there before, and whenever `fencing_token` is null."
    )
    queued_seconds: float = Field(
        description="Seconds from sending the request until the grant, or until it stopped waiting (timeout, a "
        "signal), rounded to 0.001 s."
    )
    run_seconds: float = Field(
        description="Seconds COMMAND ran, rounded to 0.001 s; 0.0 when it did not run (skipped, refused, "
        "superseded, timed out, withdrawn, cancelled before it started)."
    )
    exit_code: int = Field(
        description="The exit code `runner-ctl deploy` exits with: 0 for succeeded, skipped_stale and "
        "superseded; COMMAND's code when failed (127 when it could not start); 3 refused; 4 timeout; "
        "5 lease_lost; 130 withdrawn or cancelled."
    )


# ---- runner-ctl latency report --format json ----------------------------------------------------------


class WindowJson(BaseModel):
    """The report's window: the runs (pipelines) created in [since, until) are counted."""

    model_config = ConfigDict(extra="forbid")

    since: str = Field(
        description="Start of the window, inclusive: an ISO 8601 UTC date-time to the second, e.g. "
        "`2024-05-01T00:00:00Z` (rounded down). From `--since` (default `7d` ago); an offline trace without "
        "`--since`/`--until` uses its own span."
    )
    until: str = Field(
        description="End of the window, exclusive: an ISO 8601 UTC date-time to the second (rounded up). From "
        "`--until` (default now)."
    )


class QueueStatsJson(BaseModel):
    """Queue time statistics in seconds: `started_at - created_at` of each counted job (GitLab: its own
    `queued_duration`), negative values clamped to 0.

    Percentiles interpolate linearly between closest ranks (numpy's default); every value is rounded to
    0.001 s, and null when no job was counted.
    """

    model_config = ConfigDict(extra="forbid")

    p50: float | None = Field(description="Median queue time, seconds; null with no jobs.")
    p90: float | None = Field(description="90th percentile queue time, seconds; null with no jobs.")
    p95: float | None = Field(
        description="95th percentile queue time, seconds: the figure `--target-p95` is about. Null with no jobs."
    )
    p99: float | None = Field(description="99th percentile queue time, seconds; null with no jobs.")
    max: float | None = Field(description="Longest queue time, seconds; null with no jobs.")
    mean: float | None = Field(description="Mean queue time, seconds; null with no jobs.")


class ShortStatsJson(BaseModel):
    """The median and 95th percentile of a duration in seconds (run time, wall-clock latency, dependency
    wait), rounded to 0.001 s; null when there are no values."""

    model_config = ConfigDict(extra="forbid")

    p50: float | None = Field(description="Median, seconds; null when there are no values.")
    p95: float | None = Field(description="95th percentile, seconds; null when there are no values.")


class OverallJson(BaseModel):
    """Statistics over every counted job of the window, self-hosted and hosted alike."""

    model_config = ConfigDict(extra="forbid")

    queue_seconds: QueueStatsJson = Field(description="Queue time of every counted job.")
    run_seconds: ShortStatsJson = Field(
        description="Run time, `completed_at - started_at`, of every counted job that has completed."
    )
    wall_clock_seconds: ShortStatsJson = Field(
        description="Wall-clock latency per run attempt: its last job's `completed_at` minus the attempt's "
        "creation. Attempts with a job still running are left out."
    )
    dependency_wait_seconds: ShortStatsJson = Field(
        description="Per job, when it was queued minus when its run attempt was created: time spent waiting for "
        "`needs`/earlier stages, reported apart from runner queue time."
    )
    slot_utilisation: float | None = Field(
        description="Busy seconds of self-hosted jobs inside the window divided by (current slots x window "
        "seconds), a fraction rounded to 4 places (above 1 when the slots were undercounted). Null when the "
        "current slot count is unknown or 0 (`recommendation.current_slots` null or 0)."
    )


class LabelSetJson(BaseModel):
    """The jobs that asked for one label set (GitLab: tag list)."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(
        description="The labels the jobs asked for, sorted and deduplicated (GitLab: tags); empty for jobs that "
        "asked for none."
    )
    jobs: int = Field(description="Counted jobs (executions) with this label set.")
    queue_seconds: QueueStatsJson = Field(description="Queue time of these jobs.")
    run_seconds: ShortStatsJson = Field(description="Run time of those of these jobs that have completed.")
    hosted: bool = Field(
        description="True when every job of the set ran on the forge's hosted runners (GitHub-hosted, GitLab.com "
        "SaaS): shown in the statistics, left out of the fleet's sizing."
    )
    slot_utilisation: float | None = Field(
        description="This set's self-hosted busy seconds inside the window divided by (current slots x window "
        "seconds), a fraction rounded to 4 places. Null for a hosted set, or when the current slot count is "
        "unknown or 0."
    )


class HourOfDayJson(BaseModel):
    """The jobs queued in one UTC hour of the day, over every day of the window."""

    model_config = ConfigDict(extra="forbid")

    hour: int = Field(description="The hour of day, UTC, 0 to 23.")
    jobs: int = Field(description="Counted jobs queued in that hour, over every day of the window.")
    queue_p95: float | None = Field(
        description="95th percentile queue time of those jobs, seconds (0.001 s); null when there were none."
    )


class ApiCallsJson(BaseModel):
    """What fetching the report cost in forge API requests; all zeros for `--from-jsonl`."""

    model_config = ConfigDict(extra="forbid")

    calls: int = Field(description="Requests that count against the API's rate limit.")
    cache_hits: int = Field(
        description="Answers served from the local cache (`--cache-dir`) with no request: a completed run "
        "attempt's jobs, which never change."
    )
    not_modified: int = Field(
        description="List pages asked again with their cached ETag and answered 304 Not Modified, which does not count "
        "against the rate limit."
    )


class RecommendationJson(BaseModel):
    """The scale-out model: the window's self-hosted jobs replayed through 1, 2, ... slots, and the smallest
    slot count whose predicted queue p95 meets the target."""

    model_config = ConfigDict(extra="forbid")

    target_p95_seconds: float = Field(
        description="The queue p95 the recommendation must meet, seconds (`--target-p95`, default 60)."
    )
    current_slots: int | None = Field(
        description="Self-hosted slots today: `--current-slots` if given, else inferred from the trace (per "
        "runner name, the most jobs it ran at once), which is 0 when the window holds no self-hosted job. Null "
        "when it cannot be inferred: runners made per job (`current_slots_basis` `unknown`)."
    )
    recommended_slots: int | None = Field(
        description="The smallest slot count whose predicted queue p95 is within the target. Null when no count "
        "up to the ceiling meets it (then `scale_out` is true), or there were no self-hosted jobs to replay."
    )
    scale_out: bool = Field(
        description="True when more slots than today's are needed: `recommended_slots` exceeds `current_slots`, "
        "or no count tried meets the target. False with no self-hosted jobs, or an unknown current size "
        "(`--fail-on-scale-out` exits 10 when true)."
    )
    predicted_queue_p95_seconds: dict[str, float | None] = Field(
        description="Predicted queue p95 in seconds (0.001 s) per slot count, keyed by the count as a string, "
        'from "1" up to max(`--max-slots`, current slots, `--max-hosts` x `--slots-per-host`). A value is null '
        "when that many slots cannot give each runner kind one; the object is empty when there were no "
        "self-hosted jobs."
    )
    simulated_jobs: int = Field(description="The self-hosted, completed jobs the model replayed.")
    current_slots_basis: Literal["given", "inferred", "unknown"] = Field(
        description="Where `current_slots` comes from: `given` (`--current-slots`), `inferred` (from the trace) "
        "or `unknown` (a unique runner name per job: ephemeral or just-in-time runners, pods)."
    )
    one_runner_per_job: bool = Field(
        description="True when the self-hosted runners had a unique name per job (at least 20 jobs, 90% of runner "
        "names seen once), which is why the current size is unknown; true exactly when `current_slots_basis` is "
        "`unknown`."
    )
    observed_queue_p95_seconds: float | None = Field(
        description="The queue p95 the replayed jobs really had, seconds (0.001 s): compare it with the "
        "prediction at the current slot count to see how well the model fits. Null with no self-hosted jobs."
    )


class ExcludedJobsJson(BaseModel):
    """Jobs the source returned that the statistics do not count, by reason."""

    model_config = ConfigDict(extra="forbid")

    skipped: int = Field(
        description="Jobs that never ran by design: conclusion or status `skipped`, `manual`, `created` or `scheduled`."
    )
    not_started: int = Field(
        description="Jobs that never reached a runner: no `started_at`, or no runner and ended in the second they "
        "started (cancelled while queued)."
    )
    carried_forward: int = Field(
        description="Jobs a GitHub re-run carried forward from an earlier attempt (same run, name, runner and "
        "`started_at`): counted once, for the earliest attempt."
    )
    negative_queue_clamped: int = Field(
        description="Counted jobs whose queue time was negative (clock skew between the forge's services) and was "
        "clamped to 0."
    )
    outside_filters: int = Field(
        description="Jobs left out by the window or by `--labels`, `--workflow` or `--branch`."
    )
    no_created_at: int = Field(
        description="Jobs the forge sent without a `created_at` (GitHub before 2023, older GitHub Enterprise "
        "Server), left out because their queue time is unknown."
    )


class MissingRunsJson(BaseModel):
    """Runs (pipelines) that were listed but whose jobs answered 404: deleted after they were listed."""

    model_config = ConfigDict(extra="forbid")

    runs: int = Field(description="How many runs were missing; 0 normally.")
    names: list[str] = Field(
        description="The first 20 of them, by id, each as `run ID (NAME, created TIME)` (GitLab: "
        "`pipeline ID (...)`); `runs` says how many there were in all."
    )


class TfvarsJson(BaseModel):
    """What `--write-tfvars FILE --slots-per-host K` did with the OpenTofu variables file."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="The variables file, as given to `--write-tfvars`.")
    slots_per_host: int = Field(description="Runner slots on each host (`--slots-per-host`).")
    previous: int | None = Field(description="`runner_count` in the file before; null when it had none.")
    runner_count: int | None = Field(
        description="`runner_count` in the file now: ceil(recommended slots / slots per host), never fewer than "
        "before without `--allow-scale-in`, never more than `--max-hosts`. The previous value when the file "
        "was left as it is; null when it was left without one."
    )
    changed: bool = Field(description="True when the file was rewritten with a new `runner_count`.")
    reason: str = Field(description="Why that count, in one sentence (also printed on stderr).")


class LatencyReportJson(BaseModel):
    """All of stdout of ``runner-ctl latency report --format json``: CI queue latency and the slot count that
    keeps the queue p95 within target."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Where the jobs came from: `github:OWNER/REPO`, `gitlab:PROJECT` or `jsonl:FILE`.")
    window: WindowJson = Field(description="The window the report covers.")
    jobs: int = Field(
        description="Counted jobs: executions that reached a runner, each once; 0 for an empty window (then "
        "`note` says so)."
    )
    overall: OverallJson = Field(description="Statistics over all counted jobs.")
    groups: list[LabelSetJson] = Field(
        description="One entry per label set (GitLab: tag list), most jobs first; empty when no jobs were counted."
    )
    by_hour_utc: list[HourOfDayJson] = Field(
        description="Always 24 entries, hours 0 to 23 UTC: where in the day queues form."
    )
    api: ApiCallsJson = Field(description="The API requests the report made.")
    recommendation: RecommendationJson = Field(
        description="The scale-out model's prediction and recommendation (present also for an empty window: "
        "`recommended_slots` null, `scale_out` false)."
    )
    excluded: ExcludedJobsJson = Field(description="What was not counted, and why.")
    missing_runs: MissingRunsJson = Field(description="Runs whose jobs could not be read (deleted since listed).")
    tfvars: TfvarsJson | None = Field(
        default=None, description="What `--write-tfvars` did; the key is present only with `--write-tfvars`."
    )
    note: str | None = Field(
        default=None,
        description='`"no jobs in window"` when no job was counted; the key is present only then.',
    )


# ---- runner-ctl runners prune --json ------------------------------------------------------------------


class KeptRunnerJson(BaseModel):
    """A runner that `prune` left registered, and why."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The runner's name as the forge lists it (GitLab: its description).")
    reason: str = Field(
        description="Why it was kept, e.g. `online`, `busy: running a job`, `name does not start with 'rc-': not "
        "registered by runner-ctl`, or `offline for 10m (since last contact), less than --offline-for 1h`."
    )


class RunnersPruneJson(BaseModel):
    """The last line of ``runner-ctl runners prune --json``: each listed runner, deleted or kept."""

    model_config = ConfigDict(extra="forbid")

    deleted: list[str] = Field(
        description="Names of the runners deleted: offline, idle, named with the prefix, and offline for at least "
        "`--offline-for` (one already gone when deleted, HTTP 404, counts too). With `--dry-run`, those that "
        "would be deleted, and nothing is. In the forge's order."
    )
    kept: list[KeptRunnerJson] = Field(
        description="Every other runner listed, with why it was kept, in the forge's order."
    )


# ---- the list the reference page is generated from --------------------------------------------------


@dataclass(frozen=True)
class Contract:
    """One JSON contract: its anchor on docs/reference/json.md, the command, when and where it prints, its model."""

    anchor: str
    command: str
    summary: str
    model: type[BaseModel]


CONTRACTS: tuple[Contract, ...] = (
    Contract(
        anchor="rehearse-json",
        command="runner-ctl rehearse --json",
        summary=(
            "With `--json` the last line of stdout is this one JSON object; the steps and the summary table go to "
            "stderr. It is printed whether the rehearsal passed (exit 0) or failed at a step (exit 1, "
            "`failed_step` and `error` say where and why), and also when the rehearsal is refused before any host "
            "boots: bad group data, `--deploy` or `--hosts`, a missing prerequisite (exit 2, `failed_step` "
            "`validate`, empty lists and zero counts). An interrupted rehearsal (exit 130) prints none. Keys "
            "are only ever added: `ok`, `layers`, `first_run`, `second_run` and `checks` are the original "
            "contract, and no key is removed or changes meaning."
        ),
        model=RehearseJson,
    ),
    Contract(
        anchor="deploy-json",
        command="runner-ctl deploy --env ENV --commit SHA --json -- COMMAND [ARGS...]",
        summary=(
            "With `--json` the last line of stdout is this one JSON object, after COMMAND's own output (which "
            "shares stdout) and whatever the deploy's status: succeeded, failed, skipped, superseded, refused, "
            "timed out, lease lost, withdrawn or cancelled by a signal. Its `exit_code` is the command's exit "
            "code. It is not printed when the deploy never reached the lock service's answer: a usage or "
            "configuration error (exit 2) or an unreachable service (exit 6) is one line on stderr instead. "
            "The keys are stable: new keys may be added, none removed or changed in meaning."
        ),
        model=DeployJson,
    ),
    Contract(
        anchor="latency-report-json",
        command="runner-ctl latency report --format json",
        summary=(
            "With `--format json` stdout is exactly this one JSON document (progress and `--write-tfvars` notes "
            "go to stderr). It is printed whenever a report was made: exit 0, also for an empty window (`jobs` 0, "
            "`note` set, statistics null), and exit 10 with `--fail-on-scale-out` when `scale_out` is true. On "
            "an error (exit 1 or 2) nothing is printed to stdout. Statistics of no values are null, never "
            "absent. New keys may be added; the keys listed here are not removed or changed in meaning."
        ),
        model=LatencyReportJson,
    ),
    Contract(
        anchor="runners-prune-json",
        command="runner-ctl runners prune --json",
        summary=(
            "With `--json` the last line of stdout is this one JSON object; the line per runner saying what was "
            "done and why goes to stderr (and to the audit log, `runners/audit.jsonl` under "
            "`$RUNNER_CTL_STATE_DIR`). It is printed when the prune ran to its end (exit 0), also when there was "
            "nothing to prune and with `--dry-run`; on an error (exit 1 or 2) nothing is printed to stdout. New "
            "keys may be added; none are removed or changed in meaning."
        ),
        model=RunnersPruneJson,
    ),
)
