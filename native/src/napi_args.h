// Shared by the N-API binding files: argument validation (every length and range is checked
// before memory is touched; violations throw TypeError / RangeError) and the active kernel table.
#pragma once
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>

#include <napi.h>

#include "common.h"

namespace ol {

extern std::atomic<const KernelTable*> g_kernels;

[[noreturn]] inline void throw_type(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] inline void throw_range(const Napi::Env& env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

template <class T>
struct View {
  T* data;
  size_t length;  // in elements
};

inline const char* ta_name(napi_typedarray_type t) {
  switch (t) {
    case napi_uint8_array: return "Uint8Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_float32_array: return "Float32Array";
    default: return "TypedArray";
  }
}

template <class T>
View<T> typed_value(const Napi::Env& env, const Napi::Value& v, const std::string& name, napi_typedarray_type want) {
  if (!v.IsTypedArray()) throw_type(env, name + " must be a " + ta_name(want));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != want) throw_type(env, name + " must be a " + ta_name(want));
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data());
  const size_t len = ta.ElementLength();
  if (base == nullptr && len != 0) throw_type(env, name + " has a detached buffer");
  return {reinterpret_cast<T*>(base + ta.ByteOffset()), len};
}

template <class T>
View<T> typed(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type want) {
  if (i >= info.Length()) throw_type(info.Env(), std::string(name) + " must be a " + ta_name(want));
  return typed_value<T>(info.Env(), info[i], name, want);
}

inline int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  const Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsNumber()) throw_type(env, std::string(name) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v == std::floor(v)) || v < (double)lo || v > (double)hi)
    throw_range(env, std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "], got " + std::to_string(v));
  return (int64_t)v;
}

inline double number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) throw_type(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline int wtype_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const int t = (int)integer(info, i, name, 0, 1 << 20);
  if (!type_supported(t))
    throw_range(info.Env(), std::string(name) + " " + std::to_string(t) +
                                " is not a supported type (F32=0, F16=1, Q4_0=2, Q8_0=8, Q4_K=12, Q6_K=14, BF16=30)");
  return t;
}

template <class A>
void expect_len(const Napi::Env& env, const View<A>& v, uint64_t want, const char* name, const char* what) {
  if ((uint64_t)v.length != want)
    throw_range(env, std::string(name) + " has length " + std::to_string(v.length) + ", expected " + std::to_string(want) +
                         " (" + what + ")");
}

template <class A, class B>
bool overlaps(const View<A>& a, const View<B>& b) {
  const uintptr_t a0 = (uintptr_t)a.data, a1 = a0 + a.length * sizeof(A);
  const uintptr_t b0 = (uintptr_t)b.data, b1 = b0 + b.length * sizeof(B);
  return a.length && b.length && a0 < b1 && b0 < a1;
}
// Either the very same memory, or disjoint.
template <class A, class B>
void same_or_disjoint(const Napi::Env& env, const View<A>& a, const View<B>& b, const char* an, const char* bn) {
  if (overlaps(a, b) && !((void*)a.data == (void*)b.data && a.length * sizeof(A) == b.length * sizeof(B)))
    throw_range(env, std::string(an) + " and " + bn + " must be the same array or not overlap");
}
template <class A, class B>
void disjoint(const Napi::Env& env, const View<A>& a, const View<B>& b, const char* an, const char* bn) {
  if (overlaps(a, b)) throw_range(env, std::string(an) + " must not overlap " + bn);
}


// Bindings, one per exported function (registered in addon.cc).
Napi::Value Matmul(const Napi::CallbackInfo& info);
Napi::Value MatmulMulti(const Napi::CallbackInfo& info);
Napi::Value GetRows(const Napi::CallbackInfo& info);
Napi::Value Quantize(const Napi::CallbackInfo& info);
Napi::Value Dequantize(const Napi::CallbackInfo& info);
Napi::Value RmsNorm(const Napi::CallbackInfo& info);
Napi::Value Rope(const Napi::CallbackInfo& info);
Napi::Value KvStore(const Napi::CallbackInfo& info);
Napi::Value Attention(const Napi::CallbackInfo& info);
Napi::Value SiluMul(const Napi::CallbackInfo& info);
Napi::Value Argmax(const Napi::CallbackInfo& info);
Napi::Value FirstOutOfRange(const Napi::CallbackInfo& info);
Napi::Value Add(const Napi::CallbackInfo& info);
Napi::Value AddBias(const Napi::CallbackInfo& info);
Napi::Value LoraApply(const Napi::CallbackInfo& info);
Napi::Value LoraRegister(const Napi::CallbackInfo& info);
Napi::Value LoraRelease(const Napi::CallbackInfo& info);
Napi::Value SetLoraPath(const Napi::CallbackInfo& info);
Napi::Value GetLoraPath(const Napi::CallbackInfo& info);

}  // namespace ol
