"""A local Conan 2 recipe standing in for Conan Center's nlohmann_json/3.11.2: it packages the
nlohmann/json headers of the build machine (Debian's nlohmann-json3-dev, /usr/include/nlohmann)
so that `conan create .` runs offline (scripts/conan_check.sh exports it first). The package's
CMake names are Conan Center's: find_package(nlohmann_json), target nlohmann_json::nlohmann_json.

    conan export ports/conan/nlohmann_json    # then: conan create . --build=missing

NLOHMANN_JSON_INCLUDE_DIR in the environment points it at another copy of the headers.
"""
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.files import copy, load


class NlohmannJsonSystemConan(ConanFile):
    name = "nlohmann_json"
    version = "3.11.2"
    description = "JSON for Modern C++ (the system's headers)"
    license = "MIT"
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    def _include_dir(self):
        return os.environ.get("NLOHMANN_JSON_INCLUDE_DIR", "/usr/include")

    def validate(self):
        header = os.path.join(self._include_dir(), "nlohmann", "json.hpp")
        macros = os.path.join(self._include_dir(), "nlohmann", "detail", "abi_macros.hpp")
        if not os.path.exists(header):
            raise ConanInvalidConfiguration(
                f"no nlohmann/json headers at {self._include_dir()} (apt-get install "
                "nlohmann-json3-dev, or set NLOHMANN_JSON_INCLUDE_DIR)")
        # The version macros sit in json.hpp (single-header copy) or detail/abi_macros.hpp.
        text = load(self, macros if os.path.exists(macros) else header)
        found = ".".join(re.search(rf"#define NLOHMANN_JSON_VERSION_{k} (\d+)", text).group(1)
                         for k in ("MAJOR", "MINOR", "PATCH"))
        if found != str(self.version):
            raise ConanInvalidConfiguration(
                f"the headers at {self._include_dir()} are nlohmann/json {found}, not "
                f"{self.version}")

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "*", os.path.join(self._include_dir(), "nlohmann"),
             os.path.join(self.package_folder, "include", "nlohmann"))

    def package_info(self):
        # Conan Center's names, so recipes written against it need no change.
        self.cpp_info.set_property("cmake_file_name", "nlohmann_json")
        self.cpp_info.set_property("cmake_target_name", "nlohmann_json::nlohmann_json")
        self.cpp_info.set_property("pkg_config_name", "nlohmann_json")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
