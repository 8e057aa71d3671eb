"""GitHub and GitLab REST clients: auth headers, pagination, the ETag cache, rate limits, retries.

Everything in runner-ctl that asks a forge something goes through here: ``latency`` for job
history, the runner layers for registrations, ``runners`` for listing and pruning.
"""
