"""Group data for every runner host: the settings of each host layer.

Every key here is validated (``runner_ctl.hostdata``, from each layer's spec in ``runner_ctl.layers``) before a host is touched: a value
of the wrong type or range, or a key that is not one of these (say ``sshd_allow_cidr``),
stops ``runner-ctl rehearse`` and the pyinfra deploy with a one-line error naming the key
and the expected form or the closest known key. pyinfra's own keys (``ssh_*``, ``_sudo``,
...) may sit beside them in an inventory. The values below are the defaults;
change them here (all hosts) or per host in an inventory.
"""

# Layers deploys/runner_host.py applies, in this order: base, bazel, buildbuddy,
# github_runner, gitlab_runner, deploy_lock. A layer's name is its file stem in deploys/.
layers = ["base", "bazel", "buildbuddy", "github_runner", "gitlab_runner", "deploy_lock"]

# ---- base layer (deploys/base.py) -------------------------------------------------------
# apt sources written to /etc/apt/sources.list. `runner-ctl rehearse` replaces them with the
# test host's local repository; production uses Debian's mirrors.
apt_sources = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]

# The account CI jobs run as: no password, not in sudo/admin/wheel.
runner_user = "runner"
# Open-file limit (soft and hard) for runner_user; Bazel opens many files at once.
runner_nofile = 1048576

# sshd listens here and the host firewall opens it. 1-65535. Not pyinfra's own `ssh_port`
# (the port pyinfra connects to): after moving sshd, set ssh_port in the inventory to match.
sshd_port = 22
# "prohibit-password" (root by key only) or "no". Password logins are always off.
sshd_permit_root_login = "prohibit-password"
# Source networks the host firewall lets reach SSH. The DigitalOcean firewall in tofu/ is the
# outer fence (admin_cidrs); narrow this list to the same networks for defence in depth.
sshd_allow_cidrs = ["0.0.0.0/0", "::/0"]

# Size of /swapfile in MiB; 0 removes it. Swap keeps a memory spike in a big Bazel
# analysis from invoking the OOM killer on the Bazel server.
swap_size_mb = 2048

# journald's SystemMaxUse: the journal never grows past this.
journald_max_use = "1G"

# Kernel settings, persisted in /etc/sysctl.d/60-runner-ctl.conf. Bazel's --watchfs and
# file watchers need more inotify watches and instances than Debian's defaults.
sysctl = {
    "fs.inotify.max_user_watches": 1048576,
    "fs.inotify.max_user_instances": 8192,
    "fs.inotify.max_queued_events": 65536,
}

# The persistent data directory (Bazel caches, workspaces), owned by runner_user.
data_dir = "/var/lib/ci"
# Block device to mount at data_dir (the DigitalOcean volume, e.g.
# "/dev/disk/by-id/scsi-0DO_Volume_ci-cache"), or None for a plain directory.
data_device = None
# Filesystem on data_device: "ext4" or "xfs".
data_fs_type = "ext4"

# Install Debian security updates automatically (unattended-upgrades).
unattended_upgrades = True

# ---- bazel layer (deploys/bazel.py) ----------------------------------------------------
# Where Bazel comes from: "bazelisk" (a pinned Bazelisk release, verified against
# bazel_bazelisk_sha256 on the operator's machine before it is uploaded) or "apt" (Debian's
# bazel-bootstrap, Bazel 4.2.3; test hosts use it). Either way /usr/local/bin/bazel is a
# wrapper that drops RUNNER_TRACKING_ID, so the Bazel server outlives each CI job.
bazel_source = "bazelisk"
# The Bazel release /etc/bazel.bazelrc is written for, X.Y.Z with major 4 to 8 (4.2.3 with
# bazel_source "apt"): only flags this version accepts are written. Keep it equal to your
# repository's .bazelversion; Bazelisk runs it for a workspace that has none.
bazel_version = "7.4.1"
# The pinned Bazelisk release and its SHA-256 per host architecture (uname -m).
bazel_bazelisk_version = "1.28.1"
bazel_bazelisk_sha256 = {
    "x86_64": "22e7d3a188699982f661cf4687137ee52d1f24fec1ec893d91a6c4d791a75de8",
    "aarch64": "8ded44b58a0d9425a4178af26cf17693feac3b87bdcfef0a2a0898fcd1afc9f2",
}
# Where Bazelisk is downloaded from; {version} and {arch} (amd64/arm64) are filled in.
# Point it at a mirror if the operator's machine cannot reach GitHub.
bazel_bazelisk_url = "https://github.com/bazelbuild/bazelisk/releases/download/v{version}/bazelisk-linux-{arch}"
# startup --max_idle_secs: an idle Bazel server stays warm this long (a day: overnight).
bazel_max_idle_secs = 86400
# A local --disk_cache on the data volume (useful without a remote cache). Bazel 7.4 and
# later garbage-collect it themselves to this size (GiB) and age (days).
bazel_disk_cache = False
bazel_disk_cache_max_size_gb = 20
bazel_disk_cache_max_age_days = 14
# The hourly prune timer removes output bases unused for this many days, and trims the
# repository and disk caches when the data volume is more than this percent used (1-99),
# never while a Bazel server is running. What it frees is in its journal
# (journalctl -u runner-ctl-bazel-prune).
bazel_prune_unused_days = 14
bazel_prune_threshold_percent = 80

# ---- BuildBuddy layer (deploys/buildbuddy.py) ---------------------------------------------
# Remote cache, remote execution and build event upload, in /etc/bazel.d/buildbuddy.bazelrc
# (try-imported by the Bazel layer's /etc/bazel.bazelrc), with only the flags the configured
# bazel_version accepts. Off until it has a key: with buildbuddy_api_key = None (and
# buildbuddy_unauthenticated False) the layer removes its files and says so.
#
# The API key as a secret reference, resolved on the operator's machine: env:NAME,
# file:PATH or cmd:COMMAND (e.g. "env:BUILDBUDDY_API_KEY"). It is written only into
# /etc/bazel.d/buildbuddy-auth.bazelrc, 0640 root:runner_user; never into argv or logs.
buildbuddy_api_key = None
# True: a self-hosted BuildBuddy whose auth is off, used without a key. Refused for
# BuildBuddy cloud (anonymous invocations there are readable by anyone with the link).
buildbuddy_unauthenticated = False
# The endpoint for build events, the remote cache and remote execution: grpc://, grpcs://,
# http:// or https:// (build events and remote execution need gRPC). Self-hosted e.g.
# "grpc://buildbuddy.internal:1985".
buildbuddy_endpoint = "grpcs://remote.buildbuddy.io"
# Link Bazel prints to a build's results (--bes_results_url); None prints none.
buildbuddy_results_url = "https://app.buildbuddy.io/invocation/"
# Upload build events (--bes_backend) / use the remote cache (--remote_cache).
buildbuddy_bes = True
buildbuddy_remote_cache = True
# Run actions remotely (--remote_executor), with this many concurrent actions (--jobs, 1-5000).
buildbuddy_remote_execution = False
buildbuddy_jobs = 50
# --remote_instance_name: partitions the cache ("" for none).
buildbuddy_instance_name = ""
# Seconds Bazel waits for a remote call (--remote_timeout), 1-86400.
buildbuddy_remote_timeout = 600
# zstd-compress cache transfers, where bazel_version has the flag (5 and later) and the
# endpoint is gRPC. A self-hosted BuildBuddy needs cache.zstd_transcoding_enabled for it.
buildbuddy_compression = True
# --remote_download_outputs: "all", "toplevel" (Bazel 7's default) or "minimal".
buildbuddy_download_outputs = "toplevel"
# --build_metadata pairs sent with every invocation; ROLE=CI marks CI builds in BuildBuddy.
buildbuddy_build_metadata = {"ROLE": "CI"}

# ---- deploy lock layer (deploys/deploy_lock.py) -------------------------------------------
# Where runner-ctl-lockd listens: loopback only. CI jobs on the host use it directly;
# operators use `runner-ctl deploy --via-ssh HOST`.
deploy_lock_listen = "127.0.0.1:7465"
# API tokens. Secrets are references, resolved on the operator's machine when deploying:
# env:NAME, file:PATH, cmd:COMMAND (e.g. "cmd:pass show ci/lock"), or generated:NAME (a random
# secret kept in ~/.config/runner-ctl/secrets/NAME). An admin token may break a stuck lock.
# Each secret must be at least 16 printable ASCII characters without ':' or spaces; the
# deploy checks this on the operator's machine before it writes anything. Rehearsals use
# generated stand-ins instead (`runner-ctl rehearse --real-secrets` resolves these).
deploy_lock_tokens = [
    {"name": "ci", "secret": "generated:lock-ci", "admin": False},
    {"name": "ops", "secret": "generated:lock-ops", "admin": True},
]
# The token CI jobs on the host use: /etc/runner-ctl/lock-client.token, readable by runner_user.
deploy_lock_ci_token = "ci"
# The host that runs the fleet's one lock service; None: the first host of the runner group.
# Every other host reaches it through an SSH forward to its private_ipv4 (the inventory's),
# at the same loopback URL, so CI jobs pass no lock flags anywhere. Set it here, once for all
# hosts: a name that is no host of the inventory, or hosts that disagree, stop the deploy.
deploy_lock_host = None
