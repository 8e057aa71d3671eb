"""Push an nftables ruleset that `nft -c` rejects, through the base layer's guarded install."""

from runner_ctl.layerkit import install_validated

install_validated(
    label="nftables ruleset with a syntax error",
    dest="/etc/nftables.conf",
    content="table inet runner_ctl {\n    chain input { type filter hook input priority filter; policy accept;\n",
    validate="nft -c -f /etc/nftables.conf",
    activate="nft -f /etc/nftables.conf",
    mode="755",
)
