"""OPA wasm policies on wasmtime-py, for bench/bench_wasm.py."""
