{
  "targets": [
    {
      "target_name": "openlora_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/threadpool.cc",
        "native/src/kernels_ref.cc",
        "native/src/kernels_avx2.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lpthread"]
    }
  ]
}
