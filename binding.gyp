{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions", "-O2", "-O0"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-O2", "-O0"],
    "cflags": ["-O3", "-fPIC"],
    "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-fexceptions", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
  },
  "targets": [
    {
      # The AVX2/FMA/F16C kernels, alone with the flags that allow those instructions. The addon
      # calls into them only after __builtin_cpu_supports says the CPU has all three.
      "target_name": "openlora_kernels_avx2",
      "type": "static_library",
      "sources": ["native/src/kernels_avx2.cc", "native/src/kernels_avx2_ops.cc", "native/src/kernels_avx2_lora.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", {
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
        }]
      ]
    },
    {
      # The AVX-512 VNNI table (batched Q8_0/Q4_0 products; the rest is the AVX2 table's). Selected
      # only when __builtin_cpu_supports reports AVX-512 F/BW/VL/VNNI as well.
      "target_name": "openlora_kernels_avx512",
      "type": "static_library",
      "sources": ["native/src/kernels_avx512.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", {
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
        }]
      ]
    },
    {
      # The AMX table (batched Q8_0 products on AMX-INT8 tiles; the rest is the AVX-512 table's).
      # Selected only when the CPU reports AMX-TILE/AMX-INT8 and the kernel grants the tile state.
      "target_name": "openlora_kernels_amx",
      "type": "static_library",
      "sources": ["native/src/kernels_amx.cc"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                        "-mamx-tile", "-mamx-int8"]
        }]
      ]
    },
    {
      "target_name": "openlora_native",
      "dependencies": ["openlora_kernels_avx2", "openlora_kernels_avx512", "openlora_kernels_amx"],
      "sources": [
        "native/src/addon.cc",
        "native/src/bind_matmul.cc",
        "native/src/bind_layers.cc",
        "native/src/bind_lora.cc",
        "native/src/lora_plan.cc",
        "native/src/threadpool.cc",
        "native/src/kernels_ref.cc"
      ],
      "libraries": ["-lpthread"]
    }
  ]
}
