// lmembed/version.hpp - library version (kept equal to project(VERSION) in CMakeLists.txt).
#pragma once

#define LMEMBED_VERSION_MAJOR 0
#define LMEMBED_VERSION_MINOR 1
#define LMEMBED_VERSION_PATCH 0
#define LMEMBED_VERSION_STRING "0.1.0"
