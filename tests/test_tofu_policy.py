"""The OpenTofu module in tofu/, parsed with python-hcl2 and held to the project's policy.

No OpenTofu binary can be downloaded here, so nothing runs ``tofu validate`` or ``tofu plan``
(tofu/README.md says so). These checks stand in for a reviewer instead: SSH is the only way
in, only from ``admin_cidrs`` and from the fleet's own droplets (by the fleet's tag: the
channel to the one deploy lock service); every host's private address reaches the
inventory; cache volumes cannot be destroyed by accident; state and
plan encryption is enforced; every variable is typed and described; versions are pinned; the
outputs the inventories read exist. Each check is also run against a small bad snippet, to
prove it can fail.
"""

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

from runner_ctl.inventory import VOLUME_DEVICE_PREFIX
from tests.conftest import PROJECT_ROOT

TOFU = PROJECT_ROOT / "tofu"
# Plain strings ("tcp", not '"tcp"') and no block markers: what a policy reads most easily.
OPTIONS = hcl2.SerializationOptions(explicit_blocks=False, strip_string_quotes=True, with_comments=False)
OPEN_CIDRS = {"0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0"}
ADMIN_CIDRS = "${var.admin_cidrs}"

Config = dict[str, list[Any]]
Check = Callable[[Config], list[str]]


# ---- reading HCL --------------------------------------------------------------------------------


def parse(text: str) -> Config:
    config: Config = hcl2.loads(text, serialization_options=OPTIONS)
    return config


def load_module(directory: Path) -> Config:
    """All ``*.tf`` files of a module, merged as OpenTofu merges them (block lists concatenated)."""
    merged: Config = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in parse(path.read_text()).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def labelled(config: Config, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(label, body)`` of each one-label block: variable, output."""
    for block in config.get(kind, []):
        yield from block.items()


def resources(config: Config, resource_type: str | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(type, name, body)`` of each resource, optionally of one type."""
    for block in config.get("resource", []):
        for kind, named in block.items():
            if resource_type in (None, kind):
                for name, body in named.items():
                    yield kind, name, body


def terraform_settings(config: Config, key: str) -> list[Any]:
    """The values of ``key`` across all ``terraform`` blocks (blocks come as lists)."""
    found: list[Any] = []
    for block in config.get("terraform", []):
        value = block.get(key)
        if value is None:
            continue
        found.extend(value if isinstance(value, list) else [value])
    return found


def is_pinned(constraint: object) -> bool:
    """An exact version, a pessimistic ``~>`` constraint or a range with an upper bound."""
    if not isinstance(constraint, str):
        return False
    return bool(re.fullmatch(r"\s*(~>\s*\d+\.\d+(\.\d+)?|=?\s*\d+\.\d+\.\d+)\s*", constraint)) or "<" in constraint


# ---- the policies -------------------------------------------------------------------------------

# Resources that cannot accept traffic from outside on their own. A load balancer, an app or a
# cluster would be a new way in: adding one means revisiting this policy first.
KNOWN_RESOURCE_TYPES = {
    "digitalocean_droplet",
    "digitalocean_firewall",
    "digitalocean_project",
    "digitalocean_reserved_ip",
    "digitalocean_reserved_ip_assignment",
    "digitalocean_ssh_key",
    "digitalocean_tag",
    "digitalocean_volume",
    "digitalocean_volume_attachment",
    "digitalocean_vpc",
}
SSH_RULE_KEYS = {"protocol", "port_range", "source_addresses"}
# The fleet's rule: SSH (the lock channel's port) from droplets carrying the fleet's own tag.
FLEET_RULE_KEYS = {"protocol", "port_range", "source_tags"}
TAG_REFERENCE = re.compile(r"\$\{digitalocean_tag\.(\w+)\.name\}")


def fleet_tags(config: Config) -> set[str]:
    """Names of the ``digitalocean_tag`` resources whose name is made from var.name (one fleet's own)."""
    return {
        name for _, name, body in resources(config, "digitalocean_tag") if "${var.name}" in str(body.get("name", ""))
    }


def inbound_is_ssh_from_admin_cidrs(config: Config) -> list[str]:
    """Every inbound rule is TCP 22, from var.admin_cidrs or from the fleet's own tag; nothing else is exposed."""
    problems = []
    for kind, name, _ in resources(config):
        if kind not in KNOWN_RESOURCE_TYPES:
            problems.append(f"{kind}.{name}: a resource type this policy has not reviewed")
    for _, name, body in resources(config, "digitalocean_firewall"):
        if "dynamic" in body:
            problems.append(f"digitalocean_firewall.{name}: dynamic blocks hide which rules exist")
        for rule in body.get("inbound_rule", []):
            where = f"digitalocean_firewall.{name} inbound_rule"
            sources = rule.get("source_addresses")
            if isinstance(sources, list) and OPEN_CIDRS & set(sources):
                problems.append(f"{where}: literal open source {sorted(OPEN_CIDRS & set(sources))}")
            if rule.get("protocol") != "tcp" or str(rule.get("port_range")) != "22":
                problems.append(f"{where}: {rule.get('protocol')} port {rule.get('port_range')} is not SSH (tcp 22)")
            if set(rule) == FLEET_RULE_KEYS:
                problems.extend(_fleet_source_problems(config, where, rule["source_tags"]))
                continue
            if sources != ADMIN_CIDRS:
                problems.append(f"{where}: source_addresses is {sources!r}, not var.admin_cidrs")
            extra = sorted(set(rule) - SSH_RULE_KEYS)
            if extra:
                problems.append(f"{where}: other sources or settings {extra}")
    return problems


def _fleet_source_problems(config: Config, where: str, tags: object) -> list[str]:
    """A fleet rule's source_tags must be exactly one reference to the fleet's own tag resource."""
    matches = [TAG_REFERENCE.fullmatch(tag) for tag in tags] if isinstance(tags, list) else []
    if len(matches) != 1 or matches[0] is None or matches[0].group(1) not in fleet_tags(config):
        return [f"{where}: source_tags is {tags!r}, not the fleet's own tag (a digitalocean_tag named from var.name)"]
    return []


def fleet_reaches_itself_over_ssh(config: Config) -> list[str]:
    """One inbound rule admits the fleet's droplets by the fleet's tag, and every droplet carries that tag."""
    fleet_rules = [
        rule
        for _, _, body in resources(config, "digitalocean_firewall")
        for rule in body.get("inbound_rule", [])
        if "source_tags" in rule
    ]
    if len(fleet_rules) != 1:
        found = len(fleet_rules)
        return [f"expected one inbound_rule with source_tags (SSH between the fleet's droplets), found {found}"]
    match = TAG_REFERENCE.fullmatch(str((fleet_rules[0]["source_tags"] or [""])[0]))
    if match is None:
        return ["the fleet's inbound_rule names no digitalocean_tag"]
    reference = f"digitalocean_tag.{match.group(1)}.name"
    return [
        f"digitalocean_droplet.{name}: tags lack {reference}, so the fleet rule does not admit it"
        for _, name, body in resources(config, "digitalocean_droplet")
        if reference not in str(body.get("tags", ""))
    ]


def every_droplet_is_behind_the_firewall(config: Config) -> list[str]:
    droplet_ids = [str(body.get("droplet_ids", "")) for _, _, body in resources(config, "digitalocean_firewall")]
    return [
        f"digitalocean_droplet.{name} is in no firewall's droplet_ids"
        for _, name, _ in resources(config, "digitalocean_droplet")
        if not any(f"digitalocean_droplet.{name}[*].id" in ids for ids in droplet_ids)
    ]


def admin_cidrs_is_explicit(config: Config) -> list[str]:
    """admin_cidrs has no open default (SSH is open to the world only if someone writes so)."""
    variables = dict(labelled(config, "variable"))
    if "admin_cidrs" not in variables:
        return ["variable admin_cidrs is missing"]
    body = variables["admin_cidrs"]
    problems = []
    default = body.get("default")
    if isinstance(default, list) and OPEN_CIDRS & set(default):
        problems.append(f"variable admin_cidrs defaults to an open network {default}")
    elif default is not None:
        problems.append("variable admin_cidrs has a default; operators must name their networks")
    if not body.get("validation"):
        problems.append("variable admin_cidrs has no validation block")
    return problems


def volumes_prevent_destroy(config: Config) -> list[str]:
    volumes = list(resources(config, "digitalocean_volume"))
    if not volumes:
        return ["no digitalocean_volume: the caches need a persistent volume"]
    return [
        f"digitalocean_volume.{name} lacks lifecycle {{ prevent_destroy = true }}"
        for _, name, body in volumes
        if not any(block.get("prevent_destroy") is True for block in body.get("lifecycle", []))
    ]


def encryption_is_enforced(config: Config) -> list[str]:
    blocks = terraform_settings(config, "encryption")
    if len(blocks) != 1:
        return [f"expected one terraform {{ encryption {{ ... }} }} block, found {len(blocks)}"]
    encryption = blocks[0]
    problems = []
    variables = dict(labelled(config, "variable"))
    for provider in encryption.get("key_provider", []):
        for kind, named in provider.items():
            for name, body in named.items():
                passphrase = str(body.get("passphrase", ""))
                match = re.fullmatch(r"\$\{var\.(\w+)\}", passphrase)
                if kind == "pbkdf2" and not match:
                    problems.append(f"key_provider.pbkdf2.{name}: the passphrase must come from a variable")
                elif match:
                    variable = variables.get(match.group(1), {})
                    if variable.get("sensitive") is not True or "default" in variable:
                        problems.append(f"variable {match.group(1)}: must be sensitive and have no default")
    for method in encryption.get("method", []):
        if "unencrypted" in method:
            problems.append("method unencrypted: a fallback to plain state defeats the encryption")
    for target in ("state", "plan"):
        settings = encryption.get(target, [])
        if not settings:
            problems.append(f"encryption has no {target} block")
        for body in settings:
            if body.get("enforced") is not True:
                problems.append(f"encryption {target}: enforced = true is missing")
            if not str(body.get("method", "")).startswith("${method.aes_gcm."):
                problems.append(f"encryption {target}: method is not an aes_gcm method")
    return problems


def variables_are_typed_and_described(config: Config) -> list[str]:
    problems = []
    for name, body in labelled(config, "variable"):
        if not isinstance(body.get("description"), str) or not body["description"].strip():
            problems.append(f"variable {name} has no description")
        if "type" not in body:
            problems.append(f"variable {name} has no type")
    return problems


def versions_are_pinned(config: Config) -> list[str]:
    problems = []
    required = terraform_settings(config, "required_version")
    if not required or not all(is_pinned(value) for value in required):
        problems.append(f"required_version {required} is not pinned (e.g. '~> 1.10')")
    for value in required:
        numbers = re.search(r"(\d+)\.(\d+)", str(value))
        if numbers and (int(numbers[1]), int(numbers[2])) < (1, 10):
            problems.append(f"required_version {value} allows OpenTofu before 1.10 (no S3 lockfile)")
    providers = {
        name: spec for block in terraform_settings(config, "required_providers") for name, spec in block.items()
    }
    spec = providers.get("digitalocean")
    if not isinstance(spec, dict) or spec.get("source") != "digitalocean/digitalocean":
        problems.append("required_providers has no digitalocean = { source = 'digitalocean/digitalocean' }")
    elif not is_pinned(spec.get("version")):
        problems.append(f"provider digitalocean version {spec.get('version')!r} is not pinned")
    return problems


def droplets_run_debian_12_monitored(config: Config) -> list[str]:
    variables = dict(labelled(config, "variable"))
    problems = []
    if variables.get("image", {}).get("default") != "debian-12-x64":
        problems.append("variable image must default to debian-12-x64 (the image the layers are rehearsed on)")
    droplets = list(resources(config, "digitalocean_droplet"))
    if not droplets:
        problems.append("no digitalocean_droplet")
    for _, name, body in droplets:
        if body.get("image") != "${var.image}":
            problems.append(f"digitalocean_droplet.{name}: image is not var.image")
        if body.get("monitoring") is not True:
            problems.append(f"digitalocean_droplet.{name}: monitoring = true is missing")
        if "tags" not in body or "vpc_uuid" not in body:
            problems.append(f"digitalocean_droplet.{name}: tags and vpc_uuid are required")
    return problems


def outputs_feed_the_inventories(config: Config) -> list[str]:
    outputs = dict(labelled(config, "output"))
    problems = [
        f"output {name} is missing"
        for name in ("pyinfra_inventory", "ipv4_addresses", "private_ipv4_addresses", "reserved_ip")
        if name not in outputs
    ]
    value = str(outputs.get("pyinfra_inventory", {}).get("value", ""))
    for key in ("name", "ssh_hostname", "ssh_user", "volume_device"):
        if "pyinfra_inventory" in outputs and not re.search(rf"\b{key}\s*=", value):
            problems.append(f"output pyinfra_inventory: objects lack {key}")
    # The lock channel connects to this address: it must be the VPC one, never the public one.
    if "pyinfra_inventory" in outputs and not re.search(r"\bprivate_ipv4\s*=\s*\w+\.ipv4_address_private\b", value):
        problems.append("output pyinfra_inventory: private_ipv4 is not the droplet's ipv4_address_private")
    prefixes = [block["volume_device_prefix"] for block in config.get("locals", []) if "volume_device_prefix" in block]
    if prefixes != [VOLUME_DEVICE_PREFIX]:
        problems.append(f"local volume_device_prefix {prefixes} is not DigitalOcean's {VOLUME_DEVICE_PREFIX!r}")
    return problems


def s3_backends_lock(config: Config) -> list[str]:
    return [
        "backend s3: use_lockfile = true is missing (concurrent applies would not be locked)"
        for backend in terraform_settings(config, "backend")
        for kind, body in backend.items()
        if kind == "s3" and body.get("use_lockfile") is not True
    ]


# Each check, with snippets it must refuse and a word of the expected complaint.
POLICIES: dict[str, tuple[Check, list[tuple[str, str]]]] = {
    "inbound-ssh-only": (
        inbound_is_ssh_from_admin_cidrs,
        [
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "80"\n    source_addresses = var.admin_cidrs\n  }\n}\n',
                "port 80 is not SSH",
            ),
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "22"\n    source_addresses = ["0.0.0.0/0", "::/0"]\n  }\n}\n',
                "literal open source",
            ),
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "22"\n    source_addresses = var.admin_cidrs\n    source_tags = ["web"]\n'
                "  }\n}\n",
                "other sources or settings ['source_tags']",
            ),
            ('resource "digitalocean_loadbalancer" "lb" {\n  name = "x"\n}\n', "has not reviewed"),
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "7465"\n    source_tags = [digitalocean_tag.fleet.name]\n  }\n}\n'
                'resource "digitalocean_tag" "fleet" {\n  name = "${var.name}-fleet"\n}\n',
                "port 7465 is not SSH",
            ),
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "22"\n    source_tags = var.tags\n  }\n}\n',
                "not the fleet's own tag",
            ),
            (
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "22"\n    source_tags = [digitalocean_tag.shared.name]\n  }\n}\n'
                'resource "digitalocean_tag" "shared" {\n  name = "everything"\n}\n',
                "not the fleet's own tag",
            ),
        ],
    ),
    "fleet-ssh-by-tag": (
        fleet_reaches_itself_over_ssh,
        [
            ('resource "digitalocean_firewall" "f" {\n  name = "x"\n}\n', "found 0"),
            (
                'resource "digitalocean_tag" "fleet" {\n  name = "${var.name}-fleet"\n}\n'
                'resource "digitalocean_droplet" "d" {\n  tags = var.tags\n}\n'
                'resource "digitalocean_firewall" "f" {\n  inbound_rule {\n    protocol = "tcp"\n'
                '    port_range = "22"\n    source_tags = [digitalocean_tag.fleet.name]\n  }\n}\n',
                "digitalocean_droplet.d: tags lack digitalocean_tag.fleet.name",
            ),
        ],
    ),
    "droplets-fenced": (
        every_droplet_is_behind_the_firewall,
        [('resource "digitalocean_droplet" "extra" {\n  name = "x"\n}\n', "digitalocean_droplet.extra")],
    ),
    "admin-cidrs-explicit": (
        admin_cidrs_is_explicit,
        [
            (
                'variable "admin_cidrs" {\n  type = list(string)\n  description = "x"\n'
                '  default = ["0.0.0.0/0"]\n  validation {\n    condition = true\n    error_message = "x"\n'
                "  }\n}\n",
                "open network",
            ),
            ('variable "admin_cidrs" {\n  type = list(string)\n  description = "x"\n}\n', "no validation"),
        ],
    ),
    "volumes-kept": (
        volumes_prevent_destroy,
        [('resource "digitalocean_volume" "v" {\n  size = 10\n}\n', "prevent_destroy")],
    ),
    "encryption-enforced": (
        encryption_is_enforced,
        [
            ('terraform {\n  required_version = "~> 1.10"\n}\n', "found 0"),
            (
                'terraform {\n  encryption {\n    key_provider "pbkdf2" "k" {\n      passphrase = "literal-in-git"\n'
                '    }\n    method "aes_gcm" "m" {\n      keys = key_provider.pbkdf2.k\n    }\n'
                '    method "unencrypted" "old" {}\n    state {\n      method = method.aes_gcm.m\n    }\n  }\n}\n',
                "enforced = true is missing",
            ),
        ],
    ),
    "variables-typed": (
        variables_are_typed_and_described,
        [('variable "region" {\n  default = "fra1"\n}\n', "variable region has no description")],
    ),
    "versions-pinned": (
        versions_are_pinned,
        [
            (
                'terraform {\n  required_version = ">= 1.6"\n  required_providers {\n    digitalocean = {\n'
                '      source = "digitalocean/digitalocean"\n      version = ">= 2.0"\n    }\n  }\n}\n',
                "is not pinned",
            )
        ],
    ),
    "debian-12-monitored": (
        droplets_run_debian_12_monitored,
        [
            (
                'variable "image" {\n  type = string\n  description = "x"\n  default = "ubuntu-24-04-x64"\n}\n'
                'resource "digitalocean_droplet" "d" {\n  image = var.image\n}\n',
                "debian-12-x64",
            )
        ],
    ),
    "outputs": (
        outputs_feed_the_inventories,
        [
            ('output "pyinfra_inventory" {\n  value = [for d in x : { name = d.name }]\n}\n', "lack ssh_hostname"),
            (
                'output "pyinfra_inventory" {\n'
                "  value = [for d in x : { name = d.name, private_ipv4 = d.ipv4_address }]\n}\n",
                "private_ipv4 is not the droplet's ipv4_address_private",
            ),
        ],
    ),
    "s3-locks": (
        s3_backends_lock,
        [('terraform {\n  backend "s3" {\n    bucket = "b"\n    key = "k"\n  }\n}\n', "use_lockfile")],
    ),
}


@pytest.fixture(scope="module")
def module() -> Config:
    return load_module(TOFU)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_module_meets_the_policy(module: Config, policy: str) -> None:
    check, _ = POLICIES[policy]
    assert check(module) == []


@pytest.mark.parametrize(
    ("policy", "index"), [(name, index) for name, (_, bad) in POLICIES.items() for index in range(len(bad))]
)
def test_the_policy_catches_a_violation(policy: str, index: int) -> None:
    check, bad = POLICIES[policy]
    snippet, complaint = bad[index]
    problems = check(parse(snippet))
    assert any(complaint in problem for problem in problems), problems


def test_the_team_backend_example_is_spaces_with_a_lockfile() -> None:
    example = parse((TOFU / "backend.tf.example").read_text())
    backends = terraform_settings(example, "backend")
    assert [list(backend) for backend in backends] == [["s3"]]
    assert s3_backends_lock(example) == []
    s3 = backends[0]["s3"]
    assert s3["endpoints"]["s3"].endswith(".digitaloceanspaces.com")
    # Credentials come from the environment, never from a file in git.
    assert not {"access_key", "secret_key"} & set(s3)


def test_the_tfvars_example_sets_admin_cidrs_and_no_secret() -> None:
    example = parse((TOFU / "terraform.tfvars.example").read_text())
    assert example["admin_cidrs"] and not OPEN_CIDRS & set(example["admin_cidrs"])
    assert "state_passphrase" not in example
    variables = dict(labelled(load_module(TOFU), "variable"))
    assert set(example) <= set(variables)
