"""Real processes and fault recipes shared by the tests, the benchmarks and `make demo`.

One module per kind of thing it runs or measures, named for it:
`ports` (free loopback ports, waiting for one), `redis_servers` (redis-server, Sentinel and Cluster
setups, redis-cli), `app_servers` (`aifactory-server` processes, their env, HTTP and RSS helpers),
`tcp_proxy` (a cuttable TCP link), `kube_api` (a local Kubernetes API for the cluster check) and
`faults` (outage, restart and failover recipes under load). Classes are the things started (`RedisServer`,
`ServerSet`, `TcpProxy`), functions say what they do (`start_servers`, `free_port`, `wait_until`).
Nothing here imports `tests` or `bench`; not shipped in the wheel.
"""
