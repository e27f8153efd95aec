# Sourced by the tests that drive a Python reference (tests/tokenizer/run.sh, tests/gpt2/run.sh).
# find_python IMPORTS CANDIDATE...: prints the first of $NABLA_PYTHON, python3 on PATH and the
# candidates (ctest passes the venv scripts/test.sh and .ci/run make, build/python) that can run
# `import IMPORTS`; prints nothing when none can.
find_python() {
  local imports=$1 py
  shift
  for py in ${NABLA_PYTHON:-} python3 "$@"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $imports" >/dev/null 2>&1; then
      echo "$py"
      return
    fi
  done
}
