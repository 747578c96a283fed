// vgg_classify_trt ENGINE.plan IMAGE [K]: top-K classes of one image with a TensorRT engine built
// by `vggdeploy build`: deserialize the plan, set the input shape (within profile 0), enqueueV3.
// Preprocessing and class names come from the engine's entry in the manifest.json beside it (class
// names may be null); buffers take each tensor's own type (float32, or float16 for `--io fp16`).
// Written against TensorRT 10.x/11.x's C++ API; compiled only where its headers are found.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "artifact_io.hpp"
#include "preprocess.hpp"

namespace {
class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "tensorrt: " << msg << "\n";
  }
};

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

size_t volume(const nvinfer1::Dims& d) {
  size_t v = 1;
  for (int i = 0; i < d.nbDims; ++i) v *= static_cast<size_t>(d.d[i]);
  return v;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: vgg_classify_trt ENGINE.plan IMAGE [K]\n";
    return 2;
  }
  const std::string plan_path = argv[1], image_path = argv[2];
  const size_t k = argc > 3 ? std::stoul(argv[3]) : 5;
  try {
    const std::string folder = plan_path.substr(0, plan_path.find_last_of('/') + 1);
    const std::string name = plan_path.substr(plan_path.find_last_of('/') + 1);
    std::ifstream manifest_file(folder + "manifest.json");
    if (!manifest_file) throw std::runtime_error("no manifest.json beside " + plan_path);
    const auto entry = nlohmann::json::parse(manifest_file).at("artifacts").at(name);
    if (!entry.contains("preprocessing") || entry.at("preprocessing").is_null())
      throw std::runtime_error(name + " has no preprocessing in its manifest entry (built from an ONNX without metadata)");
    const Preprocessing pre = parse_preprocessing(entry.at("preprocessing").dump());
    const auto names = class_names(entry, "class_names");

    std::ifstream plan(plan_path, std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(plan)), std::istreambuf_iterator<char>());
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine) throw std::runtime_error(plan_path + " is not an engine this TensorRT can load");
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());

    std::vector<float> input = to_tensor(resize_for(load_image(image_path, pre.channels), pre), pre.crop,
                                         pre.mean, pre.stdev);
    if (!context->setInputShape("input", nvinfer1::Dims4{1, pre.channels, pre.crop, pre.crop}))
      throw std::runtime_error("1x" + std::to_string(pre.channels) + "x" + std::to_string(pre.crop) +
                               " is outside the engine's profile 0");
    cudaStream_t stream;
    check(cudaStreamCreate(&stream), "cudaStreamCreate");
    const auto element = [&](const char* tensor) {
      const nvinfer1::DataType t = engine->getTensorDataType(tensor);
      if (t == nvinfer1::DataType::kFLOAT) return Element::f32;
      if (t == nvinfer1::DataType::kHALF) return Element::f16;
      throw std::runtime_error(std::string("tensor ") + tensor + " is neither float32 nor float16");
    };
    std::vector<void*> buffers;
    void* logits_device = nullptr;
    size_t logits_count = 0;
    Element logits_type = Element::f32;
    for (int i = 0; i < engine->getNbIOTensors(); ++i) {
      const char* tensor = engine->getIOTensorName(i);
      const size_t count = volume(context->getTensorShape(tensor));
      const Element type = element(tensor);
      void* ptr = nullptr;
      check(cudaMalloc(&ptr, count * element_size(type)), "cudaMalloc");
      buffers.push_back(ptr);
      context->setTensorAddress(tensor, ptr);
      if (std::string(tensor) == "input") {
        const std::vector<unsigned char> bytes = pack(input, type);
        check(cudaMemcpyAsync(ptr, bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream), "copy in");
        check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // `bytes` ends with this scope
      }
      if (std::string(tensor) == "logits") {
        logits_device = ptr;
        logits_count = count;
        logits_type = type;
      }
    }
    if (!logits_device) throw std::runtime_error("the engine has no `logits` output");
    if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
    std::vector<unsigned char> out_bytes(logits_count * element_size(logits_type));
    check(cudaMemcpyAsync(out_bytes.data(), logits_device, out_bytes.size(), cudaMemcpyDeviceToHost, stream), "copy out");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    for (void* p : buffers) cudaFree(p);
    cudaStreamDestroy(stream);
    const std::vector<float> logits = unpack(out_bytes.data(), logits_count, logits_type);
    size_t rank = 1;
    for (size_t i : top_k(logits, k))
      std::printf("%zu\t%zu\t%.6f\t%s\n", rank++, i, logits[i], i < names.size() ? names[i].c_str() : "");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
