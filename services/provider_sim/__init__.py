"""A stand-in SMS provider: a batch send API with failure injection, for tests and benchmarks."""
