"""CI latency: job history from GitHub or GitLab (or a JSONL trace), queue-time statistics,
and a trace-replay model of how many runner slots keep queues short.

``model`` holds the job record and the JSONL trace format, ``window`` the report window,
``source`` what a source is asked with (the HTTP side is ``runner_ctl.forge``), ``github``/``gitlab``
the sources, ``stats`` and ``simulate`` the numbers, ``report`` the JSON contract, ``render`` and
``chart`` what people read or look at, ``command`` the thin typer sub-app.
"""
