{
  "targets": [
    {
      "target_name": "layers_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/copy.cc",
        "native/xattr.cc",
        "native/resolve.cc",
        "native/fsops.cc",
        "native/apply_batch.cc",
        "native/write_segments.cc",
        "native/mount.cc",
        "native/idmap.cc",
        "native/hash.cc",
        "native/tar-split.cc",
        "native/crc64.cc",
        "native/scan.cc",
        "native/shift.cc",
        "native/btrfs.cc",
        "native/lockfile.cc",
        "native/zstd.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": [
        "-std=c++17", "-O2", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter",
        "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-fPIC", "-fvisibility=hidden",
        "-ffunction-sections", "-fdata-sections"
      ],
      "ldflags": ["-Wl,-z,relro", "-Wl,-z,now", "-Wl,--gc-sections"],
      "libraries": ["-lzstd"]
    }
  ]
}
