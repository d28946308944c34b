# Sourced by the scripts: one place for the environment every entry point shares.
# uv must use the machine's Python (no interpreter downloads on a closed network), and a uv
# installed by pip --user must be found.
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
# Compile bytecode when uv installs packages (only what it installs; a no-op sync costs
# nothing): with PYTHONDONTWRITEBYTECODE=1, as on these machines and in the image, an
# uncompiled environment recompiles numpy, numba and grpc on every start (schedctl schedule
# --local took 8 s more; docs/service.md, "Start-up").
export UV_COMPILE_BYTECODE=1
