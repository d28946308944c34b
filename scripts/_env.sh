# Sourced by the scripts: one place for the environment every entry point shares.
# uv must use the machine's Python (no interpreter downloads on a closed network), and a uv
# installed by pip --user must be found.
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
