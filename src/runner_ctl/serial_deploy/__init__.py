"""Serialized deploys: ``runner-ctl deploy``, the client side of the deploy lock.

``flow`` is one deploy from enqueue to reported outcome, ``command`` the thin typer group. Not to
be confused with ``deploys/``, the pyinfra host layers.
"""
