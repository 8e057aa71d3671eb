# State and plan files hold every droplet address and the project's resource IDs; with a
# remote backend they sit in a bucket. OpenTofu encrypts both on this machine before they
# are written anywhere. `enforced` makes OpenTofu refuse to write either unencrypted, so a
# missing or emptied block can never silently downgrade the team's state.
#
# The passphrase is var.state_passphrase, supplied as TF_VAR_state_passphrase from the
# environment (.env, never git). It is needed by every command that reads state, including
# `tofu init` and `tofu output`. Losing it loses the state: keep it in the team's password
# manager. Do not rename "state_key" or "state_method": the encrypted files record them.
terraform {
  encryption {
    key_provider "pbkdf2" "state_key" {
      passphrase = var.state_passphrase
    }

    method "aes_gcm" "state_method" {
      keys = key_provider.pbkdf2.state_key
    }

    state {
      method   = method.aes_gcm.state_method
      enforced = true
    }

    plan {
      method   = method.aes_gcm.state_method
      enforced = true
    }
  }
}
