# The runner hosts: `runner_count` Debian 12 droplets in their own VPC, each with a
# persistent cache volume, behind a firewall that lets in SSH from admin_cidrs, SSH between
# the fleet's own droplets, and nothing else. pyinfra configures them afterwards
# (inventories/production.py reads outputs.tf).

locals {
  # DigitalOcean exposes an attached volume under this stable path on the droplet; the base
  # layer mounts it at data_dir (host data key data_device).
  volume_device_prefix = "/dev/disk/by-id/scsi-0DO_Volume_"
}

resource "digitalocean_ssh_key" "admin" {
  name       = "${var.name}-admin"
  public_key = file(pathexpand(var.ssh_public_key_path))
}

resource "digitalocean_vpc" "runners" {
  name        = "${var.name}-vpc"
  region      = var.region
  description = "Private network of the runner-ctl CI runner hosts"
}

# This fleet's own tag, on its droplets only. The firewall admits fleet traffic by it; var.tags
# may be shared with other fleets in the account (its default is just "runner-ctl"), this one
# is not.
resource "digitalocean_tag" "fleet" {
  name = "${var.name}-fleet"
}

resource "digitalocean_droplet" "runner" {
  count = var.runner_count

  name     = "${var.name}-${count.index + 1}"
  region   = var.region
  size     = var.size
  image    = var.image
  ssh_keys = [digitalocean_ssh_key.admin.fingerprint]
  vpc_uuid = digitalocean_vpc.runners.id
  ipv6     = true
  tags     = concat(var.tags, [digitalocean_tag.fleet.name])
  # DigitalOcean's metrics agent: CPU, memory and disk graphs and alerts for a host that is
  # never rebuilt between jobs.
  monitoring = true
}

# The cache volume outlives its droplet: a rebuilt or resized droplet gets the same volume
# back, so Bazel's caches stay warm. One volume per droplet, matched by index.
resource "digitalocean_volume" "cache" {
  count = var.runner_count

  name                    = "${var.name}-${count.index + 1}-cache"
  region                  = var.region
  size                    = var.volume_size_gb
  initial_filesystem_type = "ext4"
  description             = "Bazel caches and workspaces of ${var.name}-${count.index + 1}"
  tags                    = var.tags

  lifecycle {
    # Destroying a volume throws away hours of cache: `tofu destroy` or lowering
    # runner_count stops with an error instead. See tofu/README.md, "Scaling in".
    prevent_destroy = true
  }
}

resource "digitalocean_volume_attachment" "cache" {
  count = var.runner_count

  droplet_id = digitalocean_droplet.runner[count.index].id
  volume_id  = digitalocean_volume.cache[count.index].id
}

# The outer fence. The host's own nftables ruleset (base layer, sshd_allow_cidrs) is the
# inner one. Inbound: SSH from admin_cidrs, and SSH from the fleet's own droplets; CI runners
# poll GitHub/GitLab outbound, so nothing else needs to reach the hosts. Outbound: open
# (packages, forges, remote cache).
resource "digitalocean_firewall" "runners" {
  name        = "${var.name}-ssh-only"
  droplet_ids = digitalocean_droplet.runner[*].id

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.admin_cidrs
  }

  # The fleet's channel to its one deploy lock service: every other host keeps an SSH local
  # forward to the lock host's private_ipv4 (VPC address), so SSH is the only port it needs.
  # By tag, not by address: a rebuilt or added droplet is covered without another apply of
  # this rule, and nothing outside the fleet gains anything.
  inbound_rule {
    protocol    = "tcp"
    port_range  = "22"
    source_tags = [digitalocean_tag.fleet.name]
  }

  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}

# Optional: a static address for the first runner, kept across droplet rebuilds (useful when
# admin tooling or a forge allow-list pins the runner's address).
resource "digitalocean_reserved_ip" "runner" {
  count = var.reserved_ip ? 1 : 0

  region = var.region
}

resource "digitalocean_reserved_ip_assignment" "runner" {
  count = var.reserved_ip ? 1 : 0

  ip_address = digitalocean_reserved_ip.runner[0].ip_address
  droplet_id = digitalocean_droplet.runner[0].id
}

# Groups the billable resources in DigitalOcean's control panel.
resource "digitalocean_project" "runners" {
  name        = var.name
  description = "CI runner hosts managed by runner-ctl (tofu/ in its repository)"
  purpose     = "Operational / Developer tooling"
  environment = "Production"
  resources = concat(
    digitalocean_droplet.runner[*].urn,
    digitalocean_volume.cache[*].urn,
    digitalocean_reserved_ip.runner[*].urn,
  )
}
