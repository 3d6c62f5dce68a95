"""Resource monitor and instrumented cache and worker-pool helpers (plain counters, observable metrics)."""
