"""Helpers the tests share: free ports, real redis-server processes, helm binaries."""
