{
  # Built by scripts/build-native.mjs (npm's install script). Needs libvirt's headers
  # (libvirt-dev / libvirt-devel) and pkg-config; without them the build is skipped.
  'targets': [
    {
      'target_name': 'qemu_hook_libvirt',
      'sources': [
        'src/addon.cc',
        'src/call.cc',
        'src/connection.cc',
        'src/domain.cc',
        'src/node_device.cc',
      ],
      'include_dirs': [
        "<!@(node -p \"require('node-addon-api').include\")",
      ],
      'cflags': ["<!@(${PKG_CONFIG:-pkg-config} --cflags libvirt)"],
      'libraries': ["<!@(${PKG_CONFIG:-pkg-config} --libs libvirt)"],
      # Node-API 8 is in every Node >= 12.22; nothing newer is used.
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_ADDON_API_DISABLE_DEPRECATED'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions'],
      'cflags_cc': ['-Wall', '-Wextra'],
    },
    {
      # hooks/qemu's way to the resident hook (qemu-hook serve): one small process instead of Node.
      'target_name': 'qemu-hook-client',
      'type': 'executable',
      'sources': ['hook-client.c'],
      'cflags': ['-Wall', '-Wextra', '-O2'],
    },
  ],
}
