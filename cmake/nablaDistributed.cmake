# nabla::distributed: nabla::nabla plus MPI (its C API; Open MPI's old C++ bindings are skipped),
# and, where nabla::cuda exists (create it first: find_package(nabla COMPONENTS cuda distributed)),
# NCCL for CUDA tensors (init_process_group("nccl")). Used by nabla's own CMakeLists.txt and by
# the installed package's find_package(nabla COMPONENTS distributed). Sets
# NABLA_DISTRIBUTED_FOUND in the caller.
#
#   NABLA_WITH_NCCL  AUTO (default): NCCL when nabla::cuda exists and NCCL is found; ON: configure
#                    fails unless it is; OFF: never (CUDA tensors then go over MPI through host memory)
#   NCCL_ROOT        where NCCL lives when it is not in the CUDA toolkit (e.g. PyTorch's wheel:
#                    .../site-packages/nvidia/nccl); versioned names (libnccl.so.2) are accepted
function(nabla_add_distributed_target)
  if(TARGET nabla_distributed)
    set(NABLA_DISTRIBUTED_FOUND TRUE PARENT_SCOPE)
    return()
  endif()
  set(MPI_CXX_SKIP_MPICXX TRUE)
  find_package(MPI QUIET COMPONENTS CXX)
  if(NOT MPI_CXX_FOUND)
    set(NABLA_DISTRIBUTED_FOUND FALSE PARENT_SCOPE)
    return()
  endif()
  add_library(nabla_distributed INTERFACE)
  add_library(nabla::distributed ALIAS nabla_distributed)
  target_link_libraries(nabla_distributed INTERFACE nabla::nabla MPI::MPI_CXX)

  set(NABLA_WITH_NCCL AUTO CACHE STRING "nabla::distributed: NCCL for CUDA tensors: ON (required), OFF, or AUTO (with nabla::cuda, when found)")
  set(nccl_note "without NCCL")
  if(NABLA_WITH_NCCL AND TARGET nabla_cuda_backend)
    find_package(CUDAToolkit QUIET)
    set(hints ${NCCL_ROOT} $ENV{NCCL_ROOT})
    if(CUDAToolkit_FOUND)
      list(APPEND hints ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR} ${CUDAToolkit_LIBRARY_DIR}/.. ${CUDAToolkit_INCLUDE_DIRS}/..)
    endif()
    find_path(NABLA_NCCL_INCLUDE_DIR nccl.h HINTS ${hints} PATH_SUFFIXES include)
    find_library(NABLA_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR HINTS ${hints} PATH_SUFFIXES lib lib64)
    set(nccl_version "")
    if(NABLA_NCCL_INCLUDE_DIR)
      file(STRINGS ${NABLA_NCCL_INCLUDE_DIR}/nccl.h lines REGEX "^#define NCCL_(MAJOR|MINOR) +[0-9]+")
      string(REGEX REPLACE ".*NCCL_MAJOR +([0-9]+).*NCCL_MINOR +([0-9]+).*" "\\1.\\2" nccl_version "${lines}")
    endif()
    # non-blocking communicators (ncclConfig_t) and ncclCommFinalize arrived in NCCL 2.14
    if(NABLA_NCCL_LIBRARY AND NABLA_NCCL_INCLUDE_DIR AND nccl_version VERSION_GREATER_EQUAL 2.14)
      target_include_directories(nabla_distributed INTERFACE ${NABLA_NCCL_INCLUDE_DIR})
      target_link_libraries(nabla_distributed INTERFACE nabla::cuda ${NABLA_NCCL_LIBRARY})
      target_compile_definitions(nabla_distributed INTERFACE NABLA_HAS_NCCL)
      set(nccl_note "with NCCL ${nccl_version} (${NABLA_NCCL_LIBRARY})")
    else()
      set(nccl_note "without NCCL (library: ${NABLA_NCCL_LIBRARY}, header: ${NABLA_NCCL_INCLUDE_DIR}, version: ${nccl_version}, need >= 2.14; set NCCL_ROOT)")
    endif()
  elseif(NABLA_WITH_NCCL)
    set(nccl_note "without NCCL (no nabla::cuda)")
  endif()
  if(NABLA_WITH_NCCL AND NOT NABLA_WITH_NCCL STREQUAL "AUTO" AND NOT nccl_note MATCHES "^with NCCL")
    message(FATAL_ERROR "nabla: NABLA_WITH_NCCL=${NABLA_WITH_NCCL} but NCCL is not usable: ${nccl_note}")
  endif()
  set(NABLA_DISTRIBUTED_NCCL_NOTE "${nccl_note}" PARENT_SCOPE)
  set(NABLA_DISTRIBUTED_FOUND TRUE PARENT_SCOPE)
endfunction()
