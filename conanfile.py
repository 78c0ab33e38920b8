"""Conan 2 recipe for lmembed (header-only).

    conan create . -o "lmembed/*:with_xtensor=True"

The package is the installed CMake package (headers + lmembedConfig.cmake), so consumers use
the same find_package(lmembed) / lmembed::lmembed as without Conan; test_package/ builds the
consumer in tests/consumer/ against it.
"""
import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load
import re


class LmembedConan(ConanFile):
    name = "lmembed"
    description = "Header-only C++20 library: decoder-only LLMs as text-embedding models"
    license = "MIT"
    url = "https://github.com/lmembed/lmembed"
    topics = ("embeddings", "llm", "gguf", "safetensors", "eigen", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"with_xtensor": [True, False]}
    default_options = {"with_xtensor": False}
    exports_sources = ("CMakeLists.txt", "cmake/*", "include/*", "LICENSE")
    no_copy_source = True

    def set_version(self):
        # One source of truth: project(lmembed VERSION x.y.z) in CMakeLists.txt.
        text = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        self.version = self.version or re.search(r"project\(lmembed VERSION ([0-9.]+)", text).group(1)

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        self.requires("eigen/3.4.0", transitive_headers=True)
        self.requires("nlohmann_json/3.11.2", transitive_headers=True)
        if self.options.with_xtensor:
            self.requires("xtensor/0.24.7", transitive_headers=True)

    def validate(self):
        check_min_cppstd(self, 20)

    def package_id(self):
        # Header-only: one package for every configuration (with_xtensor only adds a target
        # and a dependency, no compiled code).
        self.info.clear()

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["LMEMBED_BUILD_TESTS"] = False
        tc.cache_variables["LMEMBED_BUILD_EXAMPLES"] = False
        tc.cache_variables["LMEMBED_BUILD_BENCH"] = False
        tc.cache_variables["LMEMBED_FUZZ"] = False
        tc.cache_variables["LMEMBED_MPI"] = False
        tc.cache_variables["LMEMBED_XTENSOR"] = bool(self.options.with_xtensor)
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.configure()
        cmake.install()

    def package_info(self):
        # Consumers get Conan's generated config with the same names as ours.
        self.cpp_info.set_property("cmake_file_name", "lmembed")
        self.cpp_info.set_property("cmake_target_name", "lmembed::lmembed")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.components["core"].set_property("cmake_target_name", "lmembed::lmembed")
        self.cpp_info.components["core"].requires = ["eigen::eigen", "nlohmann_json::nlohmann_json"]
        self.cpp_info.components["core"].bindirs = []
        self.cpp_info.components["core"].libdirs = []
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.components["core"].system_libs = ["pthread"]
        if self.options.with_xtensor:
            self.cpp_info.components["xtensor"].set_property("cmake_target_name",
                                                             "lmembed::xtensor")
            self.cpp_info.components["xtensor"].requires = ["core", "xtensor::xtensor"]
            self.cpp_info.components["xtensor"].bindirs = []
            self.cpp_info.components["xtensor"].libdirs = []
