"""pyinfra host layers: one module per layer, composed by ``runner_host.py``."""
