// vgg_classify_trt ENGINE.plan IMAGE [K]: top-K classes of one image with a TensorRT engine built
// by `vggdeploy build`: deserialize the plan, set the input shape (within profile 0), enqueueV3.
// Preprocessing and class names come from the engine's entry in the manifest.json beside it.
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
    const Preprocessing pre = parse_preprocessing(entry.at("preprocessing").dump());
    const auto names = entry.value("class_names", std::vector<std::string>{});

    std::ifstream plan(plan_path, std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(plan)), std::istreambuf_iterator<char>());
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine) throw std::runtime_error(plan_path + " is not an engine this TensorRT can load");
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());

    std::vector<float> input = to_tensor(resize_shorter(load_image(image_path, pre.channels), pre.resize), pre.crop,
                                         pre.mean, pre.stdev);
    if (!context->setInputShape("input", nvinfer1::Dims4{1, pre.channels, pre.crop, pre.crop}))
      throw std::runtime_error("1x" + std::to_string(pre.channels) + "x" + std::to_string(pre.crop) +
                               " is outside the engine's profile 0");
    cudaStream_t stream;
    check(cudaStreamCreate(&stream), "cudaStreamCreate");
    std::vector<void*> buffers;
    std::vector<float> logits;
    void* logits_device = nullptr;
    for (int i = 0; i < engine->getNbIOTensors(); ++i) {
      const char* tensor = engine->getIOTensorName(i);
      const size_t count = volume(context->getTensorShape(tensor));
      void* ptr = nullptr;
      check(cudaMalloc(&ptr, count * sizeof(float)), "cudaMalloc");  // FP32 I/O (FP16/INT8 ONNX keep FP32 I/O)
      buffers.push_back(ptr);
      context->setTensorAddress(tensor, ptr);
      if (std::string(tensor) == "input")
        check(cudaMemcpyAsync(ptr, input.data(), input.size() * sizeof(float), cudaMemcpyHostToDevice, stream), "copy in");
      if (std::string(tensor) == "logits") {
        logits.resize(count);
        logits_device = ptr;
      }
    }
    if (!logits_device) throw std::runtime_error("the engine has no `logits` output");
    if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
    check(cudaMemcpyAsync(logits.data(), logits_device, logits.size() * sizeof(float), cudaMemcpyDeviceToHost, stream),
          "copy out");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    for (void* p : buffers) cudaFree(p);
    cudaStreamDestroy(stream);
    size_t rank = 1;
    for (size_t i : top_k(logits, k))
      std::printf("%zu\t%zu\t%.6f\t%s\n", rank++, i, logits[i], i < names.size() ? names[i].c_str() : "");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
