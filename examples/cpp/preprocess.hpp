// What every vggdeploy program does to an image before the network: the artifact's own
// preprocessing metadata (vggdeploy.preprocessing): shorter side to `resize`, centre crop `crop`,
// scale to [0, 1], subtract mean, divide by std, NCHW float32. Shared by the ONNX Runtime and
// TensorRT programs.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;  // HWC, 8 bit
};

inline Image load_image(const std::string& path, int channels) {
  Image img;
  int file_channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &img.width, &img.height, &file_channels, channels);
  if (!data) throw std::runtime_error("cannot read image " + path + ": " + stbi_failure_reason());
  img.channels = channels;
  img.pixels.assign(data, data + static_cast<size_t>(img.width) * img.height * channels);
  stbi_image_free(data);
  return img;
}

// Resize to width x height (triangle filter, as a bilinear resize with antialiasing); a no-op at
// that size, so images at the model's size go through untouched.
inline Image resize_to(const Image& in, int width, int height) {
  if (in.width == width && in.height == height) return in;
  Image out;
  out.channels = in.channels;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * out.channels);
  stbir_resize_uint8_generic(in.pixels.data(), in.width, in.height, 0, out.pixels.data(), out.width, out.height, 0,
                             out.channels, STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE,
                             STBIR_COLORSPACE_LINEAR, nullptr);
  return out;
}

// Shorter side to `side`, the aspect ratio kept.
inline Image resize_shorter(const Image& in, int side) {
  if (in.width <= in.height)
    return resize_to(in, side, static_cast<int>(std::lround(static_cast<double>(in.height) * side / in.width)));
  return resize_to(in, static_cast<int>(std::lround(static_cast<double>(in.width) * side / in.height)), side);
}

// Centre crop and normalise into a 1 x C x crop x crop float tensor (NCHW).
inline std::vector<float> to_tensor(const Image& img, int crop, const std::vector<float>& mean,
                                    const std::vector<float>& stdev) {
  if (img.width < crop || img.height < crop) throw std::runtime_error("image smaller than the crop after resizing");
  // torchvision's centre: round((size - crop) / 2) with Python's round-half-to-even (nearbyint's default)
  const int top = static_cast<int>(std::nearbyint((img.height - crop) / 2.0));
  const int left = static_cast<int>(std::nearbyint((img.width - crop) / 2.0));
  std::vector<float> out(static_cast<size_t>(img.channels) * crop * crop);
  for (int c = 0; c < img.channels; ++c)
    for (int y = 0; y < crop; ++y)
      for (int x = 0; x < crop; ++x) {
        float v = img.pixels[(static_cast<size_t>(top + y) * img.width + left + x) * img.channels + c] / 255.0f;
        out[(static_cast<size_t>(c) * crop + y) * crop + x] = (v - mean[c]) / stdev[c];
      }
  return out;
}

struct Preprocessing {
  int resize = 0, crop = 0, channels = 3;
  bool resize_only = false;  // adopted with --resize-only: the whole image to crop x crop, no centre crop
  std::vector<float> mean, stdev;
};

// The image at the size the crop is taken from: shorter side to `resize`, or crop x crop outright.
inline Image resize_for(const Image& in, const Preprocessing& p) {
  return p.resize_only ? resize_to(in, p.crop, p.crop) : resize_shorter(in, p.resize);
}

inline Preprocessing parse_preprocessing(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text);
  Preprocessing p;
  p.resize = j.at("resize").get<int>();
  p.crop = j.at("crop").get<int>();
  p.mean = j.at("mean").get<std::vector<float>>();
  p.stdev = j.at("std").get<std::vector<float>>();
  p.channels = j.at("color").get<std::string>() == "gray" ? 1 : 3;
  p.resize_only = j.value("resize_only", false);
  return p;
}

// indices of the k largest scores, largest first
inline std::vector<size_t> top_k(const std::vector<float>& scores, size_t k) {
  std::vector<size_t> idx(scores.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  k = std::min(k, idx.size());
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  idx.resize(k);
  return idx;
}
