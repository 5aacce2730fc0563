"""System tests: the demo, the examples, the benchmarks' quick modes, Dask,
soak runs, plugin packages installed like a user would."""
