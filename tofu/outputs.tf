# inventories/production.py reads these with `bin/tofu -chdir=tofu output -json`.

locals {
  # null unless var.reserved_ip; taken from the assignment so it is only reported once it
  # actually points at the first droplet.
  reserved_ip = one(digitalocean_reserved_ip_assignment.runner[*].ip_address)
}

output "pyinfra_inventory" {
  description = "One object per runner droplet, in the shape pyinfra's terraform connector reads: name, ssh_hostname, ssh_user, plus volume_device (host data data_device), private_ipv4, region and droplet_id."
  value = [
    for index, droplet in digitalocean_droplet.runner : {
      name = droplet.name
      # The reserved IP, when there is one, is the first runner's stable address.
      ssh_hostname  = index == 0 && local.reserved_ip != null ? local.reserved_ip : droplet.ipv4_address
      ssh_user      = "root"
      volume_device = "${local.volume_device_prefix}${digitalocean_volume.cache[index].name}"
      private_ipv4  = droplet.ipv4_address_private
      region        = droplet.region
      droplet_id    = droplet.id
    }
  ]
}

output "ipv4_addresses" {
  description = "Public IPv4 address of each runner droplet, in runner order."
  value       = digitalocean_droplet.runner[*].ipv4_address
}

output "private_ipv4_addresses" {
  description = "VPC (private) IPv4 address of each runner droplet, in runner order."
  value       = digitalocean_droplet.runner[*].ipv4_address_private
}

output "reserved_ip" {
  description = "The reserved IPv4 address assigned to the first runner, or null when reserved_ip is false."
  value       = local.reserved_ip
}
