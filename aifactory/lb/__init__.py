"""Load-balancer configs derived from the chart's values (so they cannot drift from the ingress)."""
