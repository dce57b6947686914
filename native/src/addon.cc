// N-API bindings of openlora_native: argument validation, kernel selection, threading.
// Contract: native/openlora_native.d.ts.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <napi.h>

#include "napi_args.h"
#include "threadpool.h"

namespace ol {
std::atomic<const KernelTable*> g_kernels{nullptr};
}  // namespace ol

namespace {

using namespace ol;

struct Features {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false;
  bool amx = false;  // AMX-TILE and AMX-INT8 reported (the tile state still needs amx_enable)
};

Features detect() {
  Features f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  // libgcc also checks that the OS saves the zmm state (XCR0) before reporting AVX-512.
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  f.amx = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8");
#endif
  return f;
}

const Features kFeatures = detect();
bool avx2_ok() { return kFeatures.avx2 && kFeatures.fma && kFeatures.f16c; }
bool avx512_ok() {
  return avx2_ok() && kFeatures.avx512f && kFeatures.avx512bw && kFeatures.avx512vl && kFeatures.avx512vnni &&
         kAvx512Kernels.matmul_range != nullptr;
}
// Asked once: the kernel grants the tile state to the whole process (all threads).
bool amx_ok() {
  static const bool ok = avx512_ok() && kFeatures.amx && kAmxKernels.matmul_range != nullptr && amx_enable();
  return ok;
}
const KernelTable* best_kernels() {
  return amx_ok() ? &kAmxKernels : avx512_ok() ? &kAvx512Kernels : avx2_ok() ? &kAvx2Kernels : &kRefKernels;
}
const bool kKernelsChosen = (g_kernels.store(best_kernels()), true);

// ---------------------------------------------------------------- feature / config functions

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2", kFeatures.avx2);
  o.Set("fma", kFeatures.fma);
  o.Set("f16c", kFeatures.f16c);
  o.Set("avx512", kFeatures.avx512f && kFeatures.avx512bw && kFeatures.avx512vl);
  o.Set("avx512vnni", kFeatures.avx512vnni);
  o.Set("amx", amx_ok());
  return o;
}

Napi::Value GetKernelImpl(const Napi::CallbackInfo& info) {
  const KernelTable* k = g_kernels.load();
  return Napi::String::New(info.Env(), k == &kAmxKernels      ? "amx"
                                       : k == &kAvx512Kernels ? "avx512"
                                       : k == &kAvx2Kernels   ? "avx2"
                                                              : "reference");
}

Napi::Value SetKernelImpl(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "impl must be \"amx\", \"avx512\", \"avx2\" or \"reference\"");
  const std::string s = info[0].As<Napi::String>().Utf8Value();
  if (s == "reference") {
    g_kernels.store(&kRefKernels);
  } else if (s == "avx2") {
    if (!avx2_ok()) throw Napi::Error::New(env, "the avx2 kernels need AVX2, FMA and F16C, which this CPU lacks");
    g_kernels.store(&kAvx2Kernels);
  } else if (s == "avx512") {
    if (!avx512_ok())
      throw Napi::Error::New(env, "the avx512 kernels need AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C), which this CPU lacks");
    g_kernels.store(&kAvx512Kernels);
  } else if (s == "amx") {
    if (!amx_ok())
      throw Napi::Error::New(env, "the amx kernels need AMX-TILE/AMX-INT8 granted by the OS (and the avx512 kernels' features), which this process lacks");
    g_kernels.store(&kAmxKernels);
  } else {
    throw_range(env, "impl must be \"amx\", \"avx512\", \"avx2\" or \"reference\", got \"" + s + "\"");
  }
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  pool_set_threads((int)integer(info, 0, "n", 1, 256));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool_threads()); }

// ---------------------------------------------------------------- mapFile

const char* errno_code(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENODEV: return "ENODEV";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case EINVAL: return "EINVAL";
    case EOVERFLOW: return "EOVERFLOW";
    case EFBIG: return "EFBIG";
    case EIO: return "EIO";
    default: return "EUNKNOWN";
  }
}

[[noreturn]] void throw_sys(const Napi::Env& env, const char* syscall, const std::string& path, int e,
                            const std::string& why = "") {
  Napi::Error err = Napi::Error::New(
      env, std::string(errno_code(e)) + ": " + (why.empty() ? std::strerror(e) : why) + ", " + syscall + " '" + path + "'");
  err.Set("code", errno_code(e));
  err.Set("errno", Napi::Number::New(env, -e));
  err.Set("syscall", syscall);
  err.Set("path", path);
  throw err;
}

constexpr size_t kMaxMappedBytes = (size_t)1 << 32;

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_sys(env, "open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw_sys(env, "fstat", path, e);
  }
  if (S_ISDIR(st.st_mode)) { ::close(fd); throw_sys(env, "mmap", path, EISDIR); }
  if (!S_ISREG(st.st_mode)) { ::close(fd); throw_sys(env, "mmap", path, EINVAL, "not a regular file"); }
  if (st.st_size == 0) { ::close(fd); throw_sys(env, "mmap", path, EINVAL, "file is empty"); }
  const size_t size = (size_t)st.st_size;
  // Node's external-buffer path calls the finalizer itself when the length is over its maximum
  // (node::Buffer::kMaxLength, 4 GiB), and node-addon-api then frees the finalizer's data again:
  // a larger file must be refused before anything is mapped.
  if (size > kMaxMappedBytes) {
    ::close(fd);
    throw_sys(env, "mmap", path, EFBIG, "file is larger than the 4 GiB one mapping can hold");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw_sys(env, "mmap", path, e);
  return Napi::ArrayBuffer::New(
      env, p, size, [](Napi::Env, void* data, size_t* len) { ::munmap(data, *len); delete len; }, new size_t(size));
}

// ---------------------------------------------------------------- matmul

// measureReadBandwidth(bytes, reps): reads a buffer of `bytes` with the pool's threads `reps`
// times; returns the GB/s of each rep.
Napi::Value MeasureReadBandwidth(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const size_t bytes = (size_t)integer(info, 0, "bytes", 1 << 20, (int64_t)1 << 34) & ~(size_t)4095;
  const int reps = (int)integer(info, 1, "reps", 1, 1000);
  std::vector<uint8_t> buf(bytes);
  parallel_for((bytes + (1 << 20) - 1) >> 20, [&](size_t c) {
    const size_t b0 = c << 20, b1 = std::min(bytes, b0 + (1 << 20));
    for (size_t i = b0; i < b1; i++) buf[i] = (uint8_t)(i * 131);
  });
  const size_t chunk = 1 << 20, nchunks = (bytes + chunk - 1) / chunk;
  std::vector<uint64_t> sums(nchunks);
  Napi::Float64Array res = Napi::Float64Array::New(env, reps);
  const auto rs = (avx2_ok() ? &kAvx2Kernels : &kRefKernels)->read_sum;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(nchunks, [&](size_t c) {
      const size_t b0 = c * chunk, b1 = std::min(bytes, b0 + chunk);
      sums[c] = rs(buf.data() + b0, b1 - b0);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    res[r] = (double)bytes / s / 1e9;
  }
  uint64_t total = 0;
  for (auto v : sums) total += v;
  if (total == 42) res[0] += 0.0;  // keep the reads alive
  return res;
}

// memoryBandwidth(threads): best read bandwidth in bytes/s over a few passes of a 256 MiB
// buffer, measured with `threads` threads (the pool's thread count is restored afterwards).
Napi::Value MemoryBandwidth(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int threads = (int)integer(info, 0, "threads", 1, 256);
  const int saved = pool_threads();
  pool_set_threads(threads);
  const size_t bytes = (size_t)256 << 20, chunk = 1 << 20, nchunks = bytes / chunk;
  std::vector<uint8_t> buf(bytes);
  parallel_for(nchunks, [&](size_t c) { std::memset(buf.data() + c * chunk, (int)c, chunk); });
  std::vector<uint64_t> sums(nchunks);
  const auto rs = (avx2_ok() ? &kAvx2Kernels : &kRefKernels)->read_sum;
  double best = 0;
  for (int r = 0; r < 5; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(nchunks, [&](size_t c) { sums[c] = rs(buf.data() + c * chunk, chunk); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, (double)bytes / s);
  }
  uint64_t total = 0;
  for (auto v : sums) total += v;
  pool_set_threads(saved);
  return Napi::Number::New(env, best + (total == 1 ? 1e-9 : 0.0));
}

// ---------------------------------------------------------------- registration

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } fns[] = {
      {"cpuFeatures", CpuFeatures}, {"getKernelImpl", GetKernelImpl}, {"setKernelImpl", SetKernelImpl},
      {"setThreads", SetThreads},   {"getThreads", GetThreads},       {"mapFile", MapFile},
      {"matmul", Matmul},           {"matmulMulti", MatmulMulti},     {"getRows", GetRows},
      {"quantize", Quantize},
      {"dequantize", Dequantize},   {"rmsNorm", RmsNorm},             {"rope", Rope},
      {"kvStore", KvStore},         {"attention", Attention},         {"siluMul", SiluMul},           {"argmax", Argmax},
      {"firstOutOfRange", FirstOutOfRange},
      {"add", Add},                 {"addBias", AddBias},             {"loraApply", LoraApply},
      {"setLoraPath", SetLoraPath}, {"getLoraPath", GetLoraPath},     {"measureReadBandwidth", MeasureReadBandwidth},
      {"memoryBandwidth", MemoryBandwidth}, {"loraRegister", LoraRegister}, {"loraRelease", LoraRelease},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(openlora_native, Init)
