// Owning handles for libvirt objects. Each holds one libvirt reference, so a call running on a
// worker thread keeps its object alive even if JavaScript closes or drops it meanwhile.
#pragma once

#include <libvirt/libvirt.h>

#include <memory>

namespace qh {

struct ConnectRelease {
  void operator()(virConnectPtr p) const { virConnectClose(p); }
};
struct NodeDeviceRelease {
  void operator()(virNodeDevicePtr p) const { virNodeDeviceFree(p); }
};
struct DomainRelease {
  void operator()(virDomainPtr p) const { virDomainFree(p); }
};

using ConnectHandle = std::unique_ptr<virConnect, ConnectRelease>;
using NodeDeviceHandle = std::unique_ptr<virNodeDevice, NodeDeviceRelease>;
using DomainHandle = std::unique_ptr<virDomain, DomainRelease>;

// New references to objects someone else owns (null stays null).
inline ConnectHandle AddRef(virConnectPtr p) {
  if (p != nullptr) virConnectRef(p);
  return ConnectHandle(p);
}
inline NodeDeviceHandle AddRef(virNodeDevicePtr p) {
  if (p != nullptr) virNodeDeviceRef(p);
  return NodeDeviceHandle(p);
}
inline DomainHandle AddRef(virDomainPtr p) {
  if (p != nullptr) virDomainRef(p);
  return DomainHandle(p);
}

}  // namespace qh
