"""The development harness: the GCS emulator, demo SavedModels and modelsync's processes on
127.0.0.1 for the demo, the tests and the benchmarks. Nothing in production imports it."""
