{
  # Two targets (docs/architecture.md, "Build"): the code that spends CPU per byte (the
  # tar's sha256 feed, the tar-split record's encoder, CRC-64) is built for speed with -O2 into a
  # static library; the rest, which waits on system calls, is built for size with -Os. -Os
  # everywhere made the shipped binary a third smaller (the package carries it); -O2 where
  # the bytes are touched keeps the import path as fast as before.
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": [
      "-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter",
      "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-fPIC", "-fvisibility=hidden",
      "-ffunction-sections", "-fdata-sections"
    ]
  },
  "targets": [
    {
      "target_name": "layers_bytes",
      "type": "static_library",
      "sources": [
        "native/hash.cc",
        "native/tar-split.cc",
        "native/crc64.cc"
      ],
      "cflags_cc": ["-O2"]
    },
    {
      "target_name": "layers_native",
      "dependencies": ["layers_bytes"],
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
        "native/scan.cc",
        "native/shift.cc",
        "native/btrfs.cc",
        "native/lockfile.cc",
        "native/zstd.cc"
      ],
      "cflags_cc": ["-Os"],
      "ldflags": ["-Wl,-z,relro", "-Wl,-z,now", "-Wl,--gc-sections"],
      "libraries": ["-lzstd"]
    }
  ]
}
