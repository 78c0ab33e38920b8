"""A local Conan 2 recipe standing in for Conan Center's eigen/3.4.0: it packages the Eigen 3.4
headers of the build machine (Debian's libeigen3-dev, /usr/include/eigen3) so that
`conan create .` runs offline (scripts/conan_check.sh exports it first). The package's CMake
names are Conan Center's: find_package(Eigen3), target Eigen3::Eigen (alias eigen::eigen).

    conan export ports/conan/eigen            # then: conan create . --build=missing

EIGEN3_INCLUDE_DIR in the environment points it at another copy of the headers.
"""
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.files import copy, load


class EigenSystemConan(ConanFile):
    name = "eigen"
    version = "3.4.0"
    description = "Eigen 3.4 C++ template library for linear algebra (the system's headers)"
    license = ("MPL-2.0", "LGPL-3.0-or-later")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    def _include_dir(self):
        return os.environ.get("EIGEN3_INCLUDE_DIR", "/usr/include/eigen3")

    def validate(self):
        macros = os.path.join(self._include_dir(), "Eigen", "src", "Core", "util", "Macros.h")
        if not os.path.exists(macros):
            raise ConanInvalidConfiguration(
                f"no Eigen headers at {self._include_dir()} (apt-get install libeigen3-dev, or "
                "set EIGEN3_INCLUDE_DIR)")
        text = load(self, macros)
        found = ".".join(re.search(rf"#define EIGEN_{k}_VERSION (\d+)", text).group(1)
                         for k in ("WORLD", "MAJOR", "MINOR"))
        if found != str(self.version):
            raise ConanInvalidConfiguration(
                f"the headers at {self._include_dir()} are Eigen {found}, not {self.version}")

    def package_id(self):
        self.info.clear()

    def package(self):
        src = self._include_dir()
        for sub in ("Eigen", "unsupported"):
            copy(self, "*", os.path.join(src, sub), os.path.join(self.package_folder, "include",
                                                                 "eigen3", sub))
        copy(self, "signature_of_eigen3_matrix_library", src,
             os.path.join(self.package_folder, "include", "eigen3"))

    def package_info(self):
        # Conan Center's names, so recipes written against it need no change.
        self.cpp_info.set_property("cmake_file_name", "Eigen3")
        self.cpp_info.set_property("cmake_target_name", "Eigen3::Eigen")
        self.cpp_info.set_property("cmake_target_aliases", ["eigen::eigen"])
        self.cpp_info.set_property("pkg_config_name", "eigen3")
        self.cpp_info.includedirs = ["include/eigen3"]
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["m"]
