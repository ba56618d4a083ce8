"""The composition root: the CLI, the embedded stack (broker, sandboxes, workers) of
`demo`, `up` and the tests, and the demo scenarios. The only package that imports every
layer; nothing imports it but the tests and the benchmarks."""
