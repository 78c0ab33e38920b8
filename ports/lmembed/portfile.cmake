# Overlay port for lmembed (header-only). Used from a checkout of lmembed:
#   vcpkg install lmembed --overlay-ports=<lmembed>/ports
# It builds from the checkout this port sits in (no download); set LMEMBED_SOURCE_DIR in the
# environment to point it at another checkout. A registry port would use vcpkg_from_github.
if(DEFINED ENV{LMEMBED_SOURCE_DIR})
  set(SOURCE_PATH "$ENV{LMEMBED_SOURCE_DIR}")
else()
  get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
endif()
if(NOT EXISTS "${SOURCE_PATH}/include/lmembed/lmembed.hpp")
  message(FATAL_ERROR "lmembed sources not found at ${SOURCE_PATH}")
endif()

# Header-only: one configuration is enough.
set(VCPKG_BUILD_TYPE release)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    xtensor LMEMBED_XTENSOR
    cuda    LMEMBED_CUDA
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DLMEMBED_BUILD_TESTS=OFF
    -DLMEMBED_BUILD_EXAMPLES=OFF
    -DLMEMBED_BUILD_BENCH=OFF
    -DLMEMBED_FUZZ=OFF
    -DLMEMBED_MPI=OFF
    ${FEATURE_OPTIONS}
)
vcpkg_cmake_install()
# lmembed installs its CMake package to share/cmake/lmembed; vcpkg wants share/lmembed.
vcpkg_cmake_config_fixup(PACKAGE_NAME lmembed CONFIG_PATH share/cmake/lmembed)

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
