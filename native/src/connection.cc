// Connection: a virConnectPtr. close() forgets it at once (later calls throw) and drops the
// reference on a worker thread; node devices and domains keep their own references.
#include <cstdlib>
#include <string>
#include <vector>

#include "addon.h"
#include "call.h"

namespace qh {
namespace {

struct NodeDeviceEntry {
  std::string name;
  std::string parent;
  bool hasParent = false;
  std::vector<std::string> capabilities;
};

bool ReadEntry(virNodeDevicePtr dev, NodeDeviceEntry& entry) {
  const char* name = virNodeDeviceGetName(dev);
  if (name == nullptr) return Failed();
  entry.name = name;
  // Drivers report a root device's missing parent as an error ("no parent for this device"):
  // NULL here means no parent; a real failure shows up in the calls that follow.
  const char* parent = virNodeDeviceGetParent(dev);
  if (parent != nullptr) {
    entry.parent = parent;
    entry.hasParent = true;
  }
  int count = virNodeDeviceNumOfCaps(dev);
  if (count < 0) return Failed();
  std::vector<char*> names(static_cast<size_t>(count) + 1, nullptr);
  int got = virNodeDeviceListCaps(dev, names.data(), count);
  if (got < 0) return Failed();
  for (int i = 0; i < got; i++) {
    entry.capabilities.emplace_back(names[i]);
    free(names[i]);
  }
  return true;
}

class Connection : public Napi::ObjectWrap<Connection> {
 public:
  explicit Connection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Connection>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "Connection objects come from open()");
    }
    conn_ = AddRef(info[0].As<Napi::External<virConnect>>().Data());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    ConnectHandle conn = std::move(conn_);
    if (!conn) return Resolved(info.Env());
    // virConnectClose returns the references left (devices, domains, calls in flight), or -1.
    auto run = [raw = conn.release()](bool&) { return Ok(virConnectClose(raw) >= 0); };
    auto done = [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); };
    return StartCall<bool>(info.Env(), "virConnectClose", std::move(run), done);
  }

  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !conn_); }

  Napi::Value ListAllNodeDevices(const Napi::CallbackInfo& info) {
    unsigned int flags = FlagsArg(info, 0);
    auto run = [c = Use(info), flags](std::vector<NodeDeviceEntry>& out) {
      virNodeDevicePtr* devs = nullptr;
      int n = virConnectListAllNodeDevices(c.get(), &devs, flags);
      if (n < 0) return Failed();
      std::vector<NodeDeviceHandle> owned;
      for (int i = 0; i < n; i++) owned.emplace_back(devs[i]);
      free(devs);
      for (auto& dev : owned) {
        NodeDeviceEntry entry;
        if (!ReadEntry(dev.get(), entry)) return Failed();
        out.push_back(std::move(entry));
      }
      return true;
    };
    auto done = [](Napi::Env env, std::vector<NodeDeviceEntry>& entries) -> Napi::Value {
      Napi::Array list = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); i++) {
        const NodeDeviceEntry& e = entries[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", e.name);
        o.Set("parent", e.hasParent ? Napi::Value(Napi::String::New(env, e.parent)) : env.Null());
        Napi::Array caps = Napi::Array::New(env, e.capabilities.size());
        for (size_t j = 0; j < e.capabilities.size(); j++) caps.Set(static_cast<uint32_t>(j), e.capabilities[j]);
        o.Set("capabilities", caps);
        list.Set(static_cast<uint32_t>(i), o);
      }
      return list;
    };
    return StartCall<std::vector<NodeDeviceEntry>>(info.Env(), "virConnectListAllNodeDevices",
                                                   std::move(run), done);
  }

  Napi::Value NodeDeviceLookupByName(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "name");
    auto run = [c = Use(info), name](NodeDeviceHandle& out) {
      out.reset(virNodeDeviceLookupByName(c.get(), name.c_str()));
      return Ok(out != nullptr);
    };
    auto done = [](Napi::Env env, NodeDeviceHandle& dev) -> Napi::Value { return WrapNodeDevice(env, dev); };
    return StartCall<NodeDeviceHandle>(info.Env(), "virNodeDeviceLookupByName", std::move(run), done);
  }

  Napi::Value DomainLookupByName(const Napi::CallbackInfo& info) {
    std::string name = StringArg(info, 0, "name");
    auto run = [c = Use(info), name](DomainHandle& out) {
      out.reset(virDomainLookupByName(c.get(), name.c_str()));
      return Ok(out != nullptr);
    };
    auto done = [](Napi::Env env, DomainHandle& dom) -> Napi::Value { return WrapDomain(env, dom); };
    return StartCall<DomainHandle>(info.Env(), "virDomainLookupByName", std::move(run), done);
  }

  Napi::Value DomainDefineXML(const Napi::CallbackInfo& info) {
    std::string xml = StringArg(info, 0, "xml");
    auto run = [c = Use(info), xml](DomainHandle& out) {
      out.reset(virDomainDefineXML(c.get(), xml.c_str()));
      return Ok(out != nullptr);
    };
    auto done = [](Napi::Env env, DomainHandle& dom) -> Napi::Value { return WrapDomain(env, dom); };
    return StartCall<DomainHandle>(info.Env(), "virDomainDefineXML", std::move(run), done);
  }

  // domainDefineXMLFlags(xml, flags): VIR_DOMAIN_DEFINE_VALIDATE has libvirt check the XML against
  // its schema first, so a definition it would not start is refused in libvirt's own words.
  Napi::Value DomainDefineXMLFlags(const Napi::CallbackInfo& info) {
    std::string xml = StringArg(info, 0, "xml");
    unsigned int flags = FlagsArg(info, 1);
    auto run = [c = Use(info), xml, flags](DomainHandle& out) {
      out.reset(virDomainDefineXMLFlags(c.get(), xml.c_str(), flags));
      return Ok(out != nullptr);
    };
    auto done = [](Napi::Env env, DomainHandle& dom) -> Napi::Value { return WrapDomain(env, dom); };
    return StartCall<DomainHandle>(info.Env(), "virDomainDefineXMLFlags", std::move(run), done);
  }

 private:
  // A reference for one call; throws when the connection was closed (a bug in the caller).
  ConnectHandle Use(const Napi::CallbackInfo& info) {
    if (!conn_) throw Napi::Error::New(info.Env(), "libvirt connection is closed");
    return AddRef(conn_.get());
  }

  static Napi::Value Resolved(Napi::Env env) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }

  ConnectHandle conn_;
};

}  // namespace

Napi::Function DefineConnection(Napi::Env env) {
  return Connection::DefineClass(
      env, "Connection",
      {
          Connection::InstanceMethod<&Connection::Close>("close"),
          Connection::InstanceAccessor<&Connection::IsClosed>("closed"),
          Connection::InstanceMethod<&Connection::ListAllNodeDevices>("listAllNodeDevices"),
          Connection::InstanceMethod<&Connection::NodeDeviceLookupByName>("nodeDeviceLookupByName"),
          Connection::InstanceMethod<&Connection::DomainLookupByName>("domainLookupByName"),
          Connection::InstanceMethod<&Connection::DomainDefineXML>("domainDefineXML"),
          Connection::InstanceMethod<&Connection::DomainDefineXMLFlags>("domainDefineXMLFlags"),
      });
}

Napi::Object WrapConnection(Napi::Env env, const ConnectHandle& handle) {
  return Data(env).connection.New({Napi::External<virConnect>::New(env, handle.get())});
}

}  // namespace qh
