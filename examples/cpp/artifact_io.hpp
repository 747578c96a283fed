// What the ONNX Runtime and TensorRT programs share besides preprocessing: class names read from
// vggdeploy's metadata (absent or null when a model has none) and input/output buffers in the
// tensor's own element type (float32, or float16 for artifacts exported with `--io fp16`).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// Class names from a JSON value: a list of strings, or null/absent (no names: indices only).
inline std::vector<std::string> class_names(const nlohmann::json& value) {
  if (value.is_null()) return {};
  return value.get<std::vector<std::string>>();
}

inline std::vector<std::string> class_names(const nlohmann::json& object, const char* key) {
  return object.contains(key) ? class_names(object.at(key)) : std::vector<std::string>{};
}

enum class Element { f32, f16 };

inline size_t element_size(Element e) { return e == Element::f16 ? 2 : 4; }

// IEEE binary16 <-> binary32, round to nearest even (what numpy's astype(float16) does).
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mant = x & 0x7fffffu;
  const int32_t e = static_cast<int32_t>((x >> 23) & 0xffu);
  if (e == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf, nan
  const int32_t exp = e - 127 + 15;
  if (exp >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);  // too large: inf
  if (exp <= 0) {                                                  // a half subnormal, or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // a carry moves into the exponent, as it should
  return static_cast<uint16_t>(half);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    const float f = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -f : f;
  }
  const uint32_t x = exp == 0x1f ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// A float32 tensor as the bytes of a tensor of element type `e`.
inline std::vector<unsigned char> pack(const std::vector<float>& values, Element e) {
  std::vector<unsigned char> bytes(values.size() * element_size(e));
  if (e == Element::f32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
  } else {
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h = float_to_half(values[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

// `count` elements of type `e` at `data`, as float32.
inline std::vector<float> unpack(const void* data, size_t count, Element e) {
  std::vector<float> out(count);
  if (e == Element::f32) {
    std::memcpy(out.data(), data, count * 4);
  } else {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      out[i] = half_to_float(h);
    }
  }
  return out;
}
