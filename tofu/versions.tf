# Pins: the OpenTofu release comes from multitool.lock.json through bin/tofu; this constraint
# refuses any other version (state encryption and S3 lockfiles need >= 1.10). The provider
# is held to 2.x: a major release may rename arguments this module and its policy tests use.
terraform {
  required_version = "~> 1.10"

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.78"
    }
  }
}

# The API token comes from the environment (DIGITALOCEAN_TOKEN, see .env.example), never from
# a variable: a variable's value could end up in a plan file or a tfvars file in git.
provider "digitalocean" {}
