// NodeDevice: a virNodeDevicePtr (it holds its own reference to the connection).
#include <cstdlib>
#include <string>

#include "addon.h"
#include "call.h"

namespace qh {
namespace {

class NodeDevice : public Napi::ObjectWrap<NodeDevice> {
 public:
  explicit NodeDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NodeDevice>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NodeDevice objects come from a Connection");
    }
    dev_ = AddRef(info[0].As<Napi::External<virNodeDevice>>().Data());
  }

  // The name is held by the local object: no call to the daemon.
  Napi::Value Name(const Napi::CallbackInfo& info) {
    const char* name = virNodeDeviceGetName(Held(info));
    return Napi::String::New(info.Env(), name != nullptr ? name : "");
  }

  Napi::Value XmlDesc(const Napi::CallbackInfo& info) {
    unsigned int flags = FlagsArg(info, 0);
    auto run = [d = AddRef(Held(info)), flags](std::string& out) {
      char* xml = virNodeDeviceGetXMLDesc(d.get(), flags);
      if (xml == nullptr) return Failed();
      out = xml;
      free(xml);
      return true;
    };
    return StartCall<std::string>(info.Env(), "virNodeDeviceGetXMLDesc", std::move(run), StringResult);
  }

  // detachFlags(driverName | null): "vfio" hands the device to vfio-pci.
  Napi::Value DetachFlags(const Napi::CallbackInfo& info) {
    bool hasDriver = info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined();
    std::string driver = hasDriver ? StringArg(info, 0, "driverName") : std::string();
    auto run = [d = AddRef(Held(info)), hasDriver, driver](bool&) {
      return Ok(virNodeDeviceDetachFlags(d.get(), hasDriver ? driver.c_str() : nullptr, 0) == 0);
    };
    return StartCall<bool>(info.Env(), "virNodeDeviceDetachFlags", std::move(run), Undefined);
  }

  Napi::Value ReAttach(const Napi::CallbackInfo& info) {
    auto run = [d = AddRef(Held(info))](bool&) { return Ok(virNodeDeviceReAttach(d.get()) == 0); };
    return StartCall<bool>(info.Env(), "virNodeDeviceReAttach", std::move(run), Undefined);
  }

  // Drops this object's reference now, not at garbage collection: the connection it came from is
  // closed for real (libvirtd sees a clean close, not an "End of file" error) only once no device
  // holds it. A local call, no daemon. Later calls throw; a call already running keeps its own.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    dev_.reset();
    return info.Env().Undefined();
  }

 private:
  virNodeDevicePtr Held(const Napi::CallbackInfo& info) {
    if (!dev_) throw Napi::Error::New(info.Env(), "libvirt node device was freed");
    return dev_.get();
  }

  static Napi::Value StringResult(Napi::Env env, std::string& s) { return Napi::String::New(env, s); }
  static Napi::Value Undefined(Napi::Env env, bool&) { return env.Undefined(); }

  NodeDeviceHandle dev_;
};

}  // namespace

Napi::Function DefineNodeDevice(Napi::Env env) {
  return NodeDevice::DefineClass(env, "NodeDevice",
                                 {
                                     NodeDevice::InstanceAccessor<&NodeDevice::Name>("name"),
                                     NodeDevice::InstanceMethod<&NodeDevice::XmlDesc>("xmlDesc"),
                                     NodeDevice::InstanceMethod<&NodeDevice::DetachFlags>("detachFlags"),
                                     NodeDevice::InstanceMethod<&NodeDevice::ReAttach>("reAttach"),
                                     NodeDevice::InstanceMethod<&NodeDevice::Free>("free"),
                                 });
}

Napi::Object WrapNodeDevice(Napi::Env env, const NodeDeviceHandle& handle) {
  return Data(env).nodeDevice.New({Napi::External<virNodeDevice>::New(env, handle.get())});
}

}  // namespace qh
