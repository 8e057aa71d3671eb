"""``runner-ctl testhost``: boot, list, enter and remove disposable local Debian 12 hosts."""

import json
import os
from typing import Annotated

import typer
from rich.table import Table

from runner_ctl.clikit import INTERRUPTED, exit_codes_epilog, fail, guard, plain_console
from runner_ctl.testhost import boot_host, destroy_host, get_host, host_names, list_hosts

__all__ = ["testhost_app"]

testhost_app = typer.Typer(
    help="Disposable local Debian 12 hosts (systemd-nspawn) for rehearsals and tests.",
    no_args_is_help=True,
)


@testhost_app.command(
    "up",
    epilog=exit_codes_epilog(
        ("0", "the host is up and answers SSH"),
        ("2", "bad flags, not root, or a system tool (debootstrap, systemd-nspawn, ip) is missing"),
        ("1", "the host did not boot or answer SSH in time (it is torn down)"),
        ("130", INTERRUPTED),
    ),
)
def testhost_up(
    name: Annotated[str | None, typer.Option(help="Host name. [default: the first free rhN]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name","address","ssh_config","ssh_key"}.')] = False,
    volume_mb: Annotated[
        int, typer.Option(help="Attach an ext4 block volume of this many MiB (like a DigitalOcean volume).")
    ] = 0,
    network: Annotated[
        str | None,
        typer.Option(
            help="Also put the host on this private network (like a DigitalOcean VPC), made by its first host; "
            'with --json, adds "network" and "private_ipv4".'
        ),
    ] = None,
) -> None:
    """Boot a disposable Debian 12 host and wait until it answers SSH."""
    host = guard(lambda: boot_host(name, volume_mb=volume_mb, network=network))
    if as_json:
        extra = {"network": host.network, "private_ipv4": host.private_address} if network else {}
        print(json.dumps({**host.public(), **extra}))
    elif network:
        print(
            f"{host.name} is up at {host.address}, {host.private_address} on network {network}: "
            f"runner-ctl testhost ssh {host.name}"
        )
    else:
        print(f"{host.name} is up at {host.address}: runner-ctl testhost ssh {host.name}")


@testhost_app.command(
    "list",
    epilog=exit_codes_epilog(("0", "listed (also when there are none)"), ("1", "a failure"), ("130", INTERRUPTED)),
)
def testhost_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List test hosts and whether each is running."""
    hosts = guard(list_hosts)
    if as_json:
        print(json.dumps([h.listing() for h in hosts]))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("name", "address", "private", "state", "ssh_config"):
        table.add_column(column)
    for h in hosts:
        private = f"{h.private_address} ({h.network})" if h.network else "-"
        table.add_row(h.name, h.address, private, "running" if h.running() else "stopped", h.ssh_config)
    plain_console().print(table)


@testhost_app.command(
    "ssh",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=exit_codes_epilog(
        ("N", "ssh's own: the remote command's exit status, 255 when the connection fails"),
        ("2", "no such test host, or ssh is not installed"),
    ),
)
def testhost_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Test host name.")],
) -> None:
    """Open a shell on a test host (extra arguments run as a command)."""
    host = guard(lambda: get_host(name))
    try:
        os.execvp("ssh", ["ssh", "-F", host.ssh_config, host.name, *ctx.args])  # noqa: S606
    except OSError as error:
        fail(f"cannot run ssh ({error.strerror or error}); install it: apt-get install openssh-client", 2)


@testhost_app.command(
    "down",
    epilog=exit_codes_epilog(
        ("0", "removed"),
        ("2", "neither a name nor --all (or both), or no such test host"),
        ("1", "a teardown step failed"),
        ("130", INTERRUPTED),
    ),
)
def testhost_down(
    name: Annotated[str | None, typer.Argument(help="Test host name.")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Tear down every test host.")] = False,
) -> None:
    """Stop a test host and remove it (the cached rootfs and apt repository stay)."""
    if (name is None) == (not all_hosts):
        fail("name exactly one test host, or pass --all (e.g. 'runner-ctl testhost down rh1')", 2)
    names = host_names() if all_hosts else [name or ""]

    def down() -> None:
        for each in names:
            destroy_host(each)
            print(f"{each} removed")

    guard(down)
