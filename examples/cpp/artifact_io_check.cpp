// artifact_io_check: the shared metadata and buffer code, run where TensorRT is absent too (CI).
//   artifact_io_check half             floats on stdin -> "bits<TAB>round-trip" per line (compared with numpy)
//   artifact_io_check entry MANIFEST NAME   the entry's class-name count and crop, as vgg_classify_trt reads them
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "artifact_io.hpp"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "half") {
      float f;
      while (std::cin >> f) {
        const uint16_t h = float_to_half(f);
        const auto back = unpack(pack({f}, Element::f16).data(), 1, Element::f16);
        std::printf("%u\t%.9g\n", static_cast<unsigned>(h), back[0]);
      }
      return 0;
    }
    if (mode == "entry" && argc == 4) {
      std::ifstream file(argv[2]);
      const auto entry = nlohmann::json::parse(file).at("artifacts").at(argv[3]);
      std::printf("class_names\t%zu\n", class_names(entry, "class_names").size());
      return 0;
    }
    std::cerr << "usage: artifact_io_check half | entry MANIFEST NAME\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
