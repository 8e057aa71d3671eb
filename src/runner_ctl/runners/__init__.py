"""``runner-ctl runners``: list a forge's registered runners and prune the offline ones runner-ctl made.

The library (``prune``: the decision, ``state``: when a runner was first seen offline,
``audit``: the audit log) is pure or file-backed; ``forges`` binds it to the GitHub and
GitLab runner APIs in ``runner_ctl.forge``; ``command`` is the typer sub-app.
"""
