"""Offline deploy tools built from the chart's values (not part of the server): e.g. `deploy.haproxy`."""
