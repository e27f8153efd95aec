# nabla::distributed: nabla::nabla plus MPI (its C API; Open MPI's old C++ bindings are skipped).
# Used by nabla's own CMakeLists.txt and by the installed package's
# find_package(nabla COMPONENTS distributed). Sets NABLA_DISTRIBUTED_FOUND in the caller.
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
  set(NABLA_DISTRIBUTED_FOUND TRUE PARENT_SCOPE)
endfunction()
