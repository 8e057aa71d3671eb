# Every variable has a type, a description and, where a bad value would only fail late in
# DigitalOcean's API (or worse, succeed), a validation block. tests/test_tofu_policy.py holds
# the module to that.

variable "state_passphrase" {
  type        = string
  sensitive   = true
  description = "Passphrase for OpenTofu state and plan encryption (at least 16 characters). Set TF_VAR_state_passphrase in the environment; never put it in a file under git."
  # No default on purpose: a default would be a passphrase in git.

  validation {
    condition     = length(var.state_passphrase) >= 16
    error_message = "state_passphrase must be at least 16 characters long (OpenTofu's pbkdf2 key provider requires it)."
  }
}

variable "name" {
  type        = string
  default     = "runner-ctl"
  description = "Name prefix for every resource: droplets are <name>-1, <name>-2, ...; their volumes <name>-1-cache, ..."

  validation {
    # Volume names (and so the /dev/disk/by-id/scsi-0DO_Volume_<name> device path) allow only
    # lower-case letters, digits and '-', starting with a letter, at most 64 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,40}$", var.name))
    error_message = "name must start with a lower-case letter and contain only lower-case letters, digits and '-' (at most 41 characters)."
  }
}

variable "region" {
  type        = string
  default     = "fra1"
  description = "DigitalOcean region slug for the droplets, volumes, VPC and reserved IP (e.g. fra1, ams3, nyc3)."

  validation {
    condition     = can(regex("^[a-z]{3}[0-9]$", var.region))
    error_message = "region must be a DigitalOcean region slug such as fra1, ams3 or nyc3."
  }
}

variable "size" {
  type        = string
  default     = "s-4vcpu-8gb"
  description = "Droplet size slug. Bazel's analysis phase wants memory: 8 GB is a sensible floor."

  validation {
    condition     = can(regex("^[a-z0-9]+(-[a-z0-9]+)+$", var.size))
    error_message = "size must be a DigitalOcean size slug such as s-4vcpu-8gb or c-8."
  }
}

variable "image" {
  type        = string
  default     = "debian-12-x64"
  description = "Droplet image: a Debian 12 slug (the image the host layers are rehearsed on) or the numeric ID of a snapshot built from one."

  validation {
    condition     = can(regex("^(debian-12-[a-z0-9-]+|[0-9]+)$", var.image))
    error_message = "image must be a Debian 12 image slug (e.g. debian-12-x64) or a numeric snapshot ID: the host layers are tested on Debian 12 only."
  }
}

variable "runner_count" {
  type        = number
  default     = 1
  description = "How many runner droplets (each with its own cache volume). Scale out by raising it, then run the same pyinfra deploy."

  validation {
    condition     = var.runner_count >= 1 && var.runner_count <= 20 && floor(var.runner_count) == var.runner_count
    error_message = "runner_count must be a whole number from 1 to 20."
  }
}

variable "admin_cidrs" {
  type        = list(string)
  description = "Source networks allowed to reach SSH (TCP 22) through the DigitalOcean firewall: the operators' and the CI deployers' addresses, e.g. [\"203.0.113.7/32\"]. The only inbound rule there is."
  # No default on purpose: SSH is open to exactly what the operator writes here. Writing
  # "0.0.0.0/0" is allowed, but it has to be written.

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for cidr in var.admin_cidrs : can(cidrhost(cidr, 0))])
    error_message = "admin_cidrs must be a non-empty list of CIDRs such as \"203.0.113.7/32\" or \"2001:db8::/48\"."
  }
}

variable "volume_size_gb" {
  type        = number
  default     = 100
  description = "Size in GiB of each droplet's cache volume (Bazel's disk and repository caches, workspaces)."

  validation {
    condition     = var.volume_size_gb >= 1 && var.volume_size_gb <= 16384 && floor(var.volume_size_gb) == var.volume_size_gb
    error_message = "volume_size_gb must be a whole number of GiB from 1 to 16384 (DigitalOcean's limits)."
  }
}

variable "ssh_public_key_path" {
  type        = string
  default     = "~/.ssh/id_ed25519.pub"
  description = "Path to the SSH public key that may log in as root on the droplets (pyinfra connects with its private half)."

  validation {
    # Only the .pub half: pointing this at a private key would upload it to DigitalOcean.
    condition     = endswith(var.ssh_public_key_path, ".pub") && fileexists(pathexpand(var.ssh_public_key_path))
    error_message = "ssh_public_key_path must name an existing public key file ending in .pub (e.g. ~/.ssh/id_ed25519.pub)."
  }
}

variable "tags" {
  type        = list(string)
  default     = ["runner-ctl"]
  description = "Tags on the droplets and volumes. inventories/digitalocean.py finds the droplets by one of them (RUNNER_CTL_DO_TAG, default runner-ctl)."

  validation {
    condition     = length(var.tags) > 0 && alltrue([for tag in var.tags : can(regex("^[A-Za-z0-9:_-]{1,255}$", tag))])
    error_message = "tags must be a non-empty list of DigitalOcean tag names: letters, digits, ':', '_' or '-'."
  }
}

variable "reserved_ip" {
  type        = bool
  default     = false
  description = "Create a reserved (static) IPv4 address and assign it to the first droplet, so its address survives a rebuild."
}
