"""The embedded runtime: broker, sandboxes and workers for `demo`, `up` and the tests."""
