// vgg_classify MODEL.onnx IMAGE [K]: top-K classes of one image with ONNX Runtime's C++ API.
// Preprocessing and class names come from the artifact's vggdeploy.* metadata. Output: one line
// per class, "rank<TAB>index<TAB>logit<TAB>name". Exit 2 on bad input, 1 on a runtime error.
// Float32 or float16 I/O (`vggdeploy export --io fp16`), read off the model's own types.
#include <onnxruntime_cxx_api.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "artifact_io.hpp"
#include "preprocess.hpp"

static std::string metadata(Ort::Session& session, const char* key, Ort::AllocatorWithDefaultOptions& alloc) {
  Ort::ModelMetadata meta = session.GetModelMetadata();
  Ort::AllocatedStringPtr value = meta.LookupCustomMetadataMapAllocated(key, alloc);
  return value ? std::string(value.get()) : std::string();
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: vgg_classify MODEL.onnx IMAGE [K]\n";
    return 2;
  }
  const std::string model_path = argv[1], image_path = argv[2];
  const size_t k = argc > 3 ? std::stoul(argv[3]) : 5;
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "vgg_classify");
    Ort::SessionOptions options;
    Ort::Session session(env, model_path.c_str(), options);
    Ort::AllocatorWithDefaultOptions alloc;
    const std::string pre_json = metadata(session, "vggdeploy.preprocessing", alloc);
    if (pre_json.empty()) {
      std::cerr << "error: " << model_path << " has no vggdeploy.preprocessing metadata\n";
      return 2;
    }
    const Preprocessing pre = parse_preprocessing(pre_json);
    std::vector<std::string> names;
    const std::string names_json = metadata(session, "vggdeploy.class_names", alloc);
    if (!names_json.empty()) names = class_names(nlohmann::json::parse(names_json));

    Image img;
    try {
      img = load_image(image_path, pre.channels);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 2;
    }
    std::vector<float> input = to_tensor(resize_for(img, pre), pre.crop, pre.mean, pre.stdev);
    const std::vector<int64_t> shape{1, pre.channels, pre.crop, pre.crop};
    Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const auto element = [](ONNXTensorElementDataType t) {
      if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) return Element::f32;
      if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) return Element::f16;
      throw std::runtime_error("the model's input/output is neither float32 nor float16");
    };
    const Element in_type = element(session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType());
    std::vector<unsigned char> input_bytes = pack(input, in_type);
    Ort::Value tensor = Ort::Value::CreateTensor(mem, input_bytes.data(), input_bytes.size(), shape.data(), shape.size(),
                                                 in_type == Element::f16 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
                                                                         : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);

    // the classifier form's output is `logits`; the dense form's is (score_map, logits)
    std::vector<std::string> outputs;
    for (size_t i = 0; i < session.GetOutputCount(); ++i)
      outputs.push_back(session.GetOutputNameAllocated(i, alloc).get());
    auto it = std::find(outputs.begin(), outputs.end(), "logits");
    if (it == outputs.end()) {
      std::cerr << "error: " << model_path << " has no `logits` output (a features artifact?)\n";
      return 2;
    }
    const char* in_names[] = {"input"};
    const char* out_names[] = {it->c_str()};
    auto result = session.Run(Ort::RunOptions{nullptr}, in_names, &tensor, 1, out_names, 1);
    const auto info = result[0].GetTensorTypeAndShapeInfo();
    const std::vector<float> scores = unpack(result[0].GetTensorRawData(), info.GetElementCount(), element(info.GetElementType()));
    size_t rank = 1;
    for (size_t i : top_k(scores, k))
      std::printf("%zu\t%zu\t%.6f\t%s\n", rank++, i, scores[i], i < names.size() ? names[i].c_str() : "");
    return 0;
  } catch (const Ort::Exception& e) {
    std::cerr << "error: ONNX Runtime: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
