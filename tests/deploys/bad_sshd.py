"""Push an sshd drop-in that `sshd -t` rejects, through the base layer's guarded install."""

from runner_ctl.layerkit import install_validated

install_validated(
    label="sshd drop-in with an impossible port",
    dest="/etc/ssh/sshd_config.d/10-runner-ctl.conf",
    content="Port 99999\nPasswordAuthentication yes\n",
    validate="sshd -t",
    activate="systemctl reload ssh.service",
)
