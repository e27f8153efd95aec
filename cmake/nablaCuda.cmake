# nabla::cuda: compiles nabla's one CUDA translation unit (backend.cu) once per build tree, for
# the consumer's CMAKE_CUDA_ARCHITECTURES, and links it with the CUDA runtime and cuBLAS(Lt)
# (and cuDNN when found). Used by nabla's own build and by the installed nablaConfig.cmake, so
# `find_package(nabla CONFIG REQUIRED COMPONENTS cuda)` gives the same target.
#
#   CMAKE_CUDA_ARCHITECTURES  default: "native" when a GPU is visible, else 75;80;90 (+PTX for 90)
#   CUDNN_ROOT                where cuDNN lives when not under the CUDA toolkit (e.g. inside a
#                             PyTorch wheel: .../site-packages/nvidia/cudnn)
#   NABLA_WITH_CUDNN          AUTO (default): cuDNN convolutions when cuDNN >= 8 is found, else says
#                             so and builds without; ON: configure fails unless cuDNN >= 8 is
#                             found; OFF: never (conv2d then runs as its composite of cuBLAS
#                             matmuls and gathers). Versioned names (libcudnn.so.9, as the pip
#                             wheels ship it) are accepted.
include_guard(GLOBAL)

# Call before enable_language(CUDA): picks the default architectures when the user set none.
macro(nabla_default_cuda_architectures)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    execute_process(COMMAND nvidia-smi -L RESULT_VARIABLE _nabla_smi_rc OUTPUT_QUIET ERROR_QUIET)
    if(_nabla_smi_rc EQUAL 0)
      set(CMAKE_CUDA_ARCHITECTURES native)
    else()
      # SASS for Turing/Ampere, SASS + PTX for Hopper (CUDA 13 dropped Volta; older toolkits
      # accept these too)
      set(CMAKE_CUDA_ARCHITECTURES 75-real 80-real 90)
    endif()
  endif()
endmacro()

function(nabla_add_cuda_target backend_source kernels_parent)
  if(TARGET nabla_cuda_backend)
    return()
  endif()
  find_package(CUDAToolkit REQUIRED)
  set(archs ${CMAKE_CUDA_ARCHITECTURES})
  # EXCLUDE_FROM_ALL: built only when something links nabla::cuda, so a project that pulls nabla
  # in (add_subdirectory, FetchContent, find_package) and links only nabla::nabla runs no nvcc
  add_library(nabla_cuda_backend STATIC EXCLUDE_FROM_ALL ${backend_source})
  set_target_properties(nabla_cuda_backend PROPERTIES
    CUDA_ARCHITECTURES "${archs}" POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
  target_include_directories(nabla_cuda_backend PRIVATE ${kernels_parent})
  target_compile_options(nabla_cuda_backend PRIVATE
    # CMake < 3.26 cannot map CUDA_STANDARD 20 for nvcc, so ask for C++20 directly
    $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr -diag-suppress=186,1675 -Xcompiler=-Wno-unknown-pragmas>)
  target_compile_definitions(nabla_cuda_backend PUBLIC NABLA_WITH_CUDA)
  target_link_libraries(nabla_cuda_backend PUBLIC nabla::nabla CUDA::cudart CUDA::cublas CUDA::cublasLt)

  set(NABLA_WITH_CUDNN AUTO CACHE STRING "nabla::cuda: use cuDNN (>= 8) for conv2d: ON (required), OFF, or AUTO (when found)")
  set(cudnn_note "without cuDNN")
  if(NABLA_WITH_CUDNN)  # ON, AUTO (both true in CMake's sense); OFF is false
    # The pip wheels (nvidia-cudnn-cu12/13) ship only libcudnn.so.9, no unversioned link.
    find_library(NABLA_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 libcudnn.so.8 NAMES_PER_DIR HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR}
                 PATH_SUFFIXES lib lib64)
    find_path(NABLA_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
              PATH_SUFFIXES include)
    set(cudnn_major 0)
    foreach(h cudnn_version.h cudnn.h)  # cuDNN >= 8 keeps its version in cudnn_version.h
      if(NABLA_CUDNN_INCLUDE_DIR AND EXISTS ${NABLA_CUDNN_INCLUDE_DIR}/${h} AND cudnn_major EQUAL 0)
        file(STRINGS ${NABLA_CUDNN_INCLUDE_DIR}/${h} line REGEX "^#define CUDNN_MAJOR +[0-9]+")
        string(REGEX MATCH "[0-9]+" cudnn_major "${line}")
        if(NOT cudnn_major)
          set(cudnn_major 0)
        endif()
      endif()
    endforeach()
    if(NABLA_CUDNN_LIBRARY AND NABLA_CUDNN_INCLUDE_DIR AND cudnn_major GREATER_EQUAL 8)
      target_include_directories(nabla_cuda_backend PUBLIC ${NABLA_CUDNN_INCLUDE_DIR})
      target_link_libraries(nabla_cuda_backend PUBLIC ${NABLA_CUDNN_LIBRARY})
      target_compile_definitions(nabla_cuda_backend PUBLIC NABLA_HAS_CUDNN)
      set(cudnn_note "with cuDNN ${cudnn_major} (${NABLA_CUDNN_LIBRARY})")
    elseif(NABLA_CUDNN_LIBRARY AND NABLA_CUDNN_INCLUDE_DIR)
      set(cudnn_note "without cuDNN (found version ${cudnn_major}, need >= 8)")
    else()
      set(cudnn_note "without cuDNN (library: ${NABLA_CUDNN_LIBRARY}, header: ${NABLA_CUDNN_INCLUDE_DIR}; set CUDNN_ROOT)")
    endif()
    if(NOT NABLA_WITH_CUDNN STREQUAL "AUTO" AND NOT cudnn_note MATCHES "^with cuDNN")
      message(FATAL_ERROR "nabla: NABLA_WITH_CUDNN=${NABLA_WITH_CUDNN} but cuDNN >= 8 was not usable: ${cudnn_note}")
    endif()
  endif()
  add_library(nabla::cuda ALIAS nabla_cuda_backend)
  message(STATUS "nabla: CUDA backend for architectures ${archs}, ${cudnn_note}")
endfunction()
