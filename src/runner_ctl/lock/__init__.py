"""The deploy lock: per-environment FIFO queues, leases, fencing tokens and an audit trail.

``store`` holds the state (SQLite), ``service`` serves it over HTTP, ``client`` talks to it.
"""
