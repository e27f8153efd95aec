#!/usr/bin/env bash
# mpirun for the tests: -np N and the program; oversubscribed (CI has 2 cores), allowed as root
# (CI runs as root), one OpenMP thread per rank, and Open MPI's shared-memory transport without
# the cross-process copy that containers forbid. Exit 77 (ctest: skipped) without mpirun.
set -euo pipefail
command -v mpirun >/dev/null || { echo "skipped: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun --oversubscribe "$@"
