"""End-to-end proof: HAProxy in front of real replicas, a real browser, faults under load."""
