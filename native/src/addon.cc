// qemu_hook_libvirt: the few libvirt calls qemu-hook needs, Promise-based.
#include "addon.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include "call.h"

namespace qh {
namespace {

// libvirt prints every error to stderr unless a handler is installed. In hook mode stderr is
// what `virsh start` shows the user, so errors travel only as rejected Promises.
void IgnoreError(void*, virErrorPtr) {}

// exitNow(code): _exit(2). A libvirt call that never returns holds a libuv worker thread, and
// Node's own exit joins those threads first: process.exit would wait for libvirt forever.
Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  _exit(code);
}

// open(uri, readOnly) -> Promise<Connection>
Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string uri = StringArg(info, 0, "uri");
  bool readOnly = info.Length() > 1 && info[1].ToBoolean().Value();
  auto run = [uri, readOnly](ConnectHandle& out) {
    out.reset(readOnly ? virConnectOpenReadOnly(uri.c_str()) : virConnectOpen(uri.c_str()));
    return out != nullptr;
  };
  auto done = [](Napi::Env env, ConnectHandle& conn) -> Napi::Value { return WrapConnection(env, conn); };
  return StartCall<ConnectHandle>(info.Env(), readOnly ? "virConnectOpenReadOnly" : "virConnectOpen", run, done);
}

// The numbers the TypeScript side relies on, straight from the headers it was built against.
Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("VIR_DOMAIN_XML_SECURE", static_cast<double>(VIR_DOMAIN_XML_SECURE));
  c.Set("VIR_DOMAIN_XML_INACTIVE", static_cast<double>(VIR_DOMAIN_XML_INACTIVE));
  c.Set("VIR_DOMAIN_DEFINE_VALIDATE", static_cast<double>(VIR_DOMAIN_DEFINE_VALIDATE));
  c.Set("VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV", static_cast<double>(VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV));
  c.Set("VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV", static_cast<double>(VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV));
  c.Set("VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET", static_cast<double>(VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET));
  c.Set("VIR_ERR_NO_SUPPORT", static_cast<double>(VIR_ERR_NO_SUPPORT));
  c.Set("VIR_ERR_NO_DOMAIN", static_cast<double>(VIR_ERR_NO_DOMAIN));
  c.Set("VIR_ERR_NO_NODE_DEVICE", static_cast<double>(VIR_ERR_NO_NODE_DEVICE));
  c.Set("VIR_FROM_NODEDEV", static_cast<double>(VIR_FROM_NODEDEV));
  c.Set("VIR_FROM_TEST", static_cast<double>(VIR_FROM_TEST));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // libvirt wants this before use from several threads; it is idempotent.
  if (virInitialize() < 0) throw Napi::Error::New(env, "virInitialize failed");
  virSetErrorFunc(nullptr, IgnoreError);

  auto* data = new AddonData();
  env.SetInstanceData(data);
  data->connection = Napi::Persistent(DefineConnection(env));
  data->nodeDevice = Napi::Persistent(DefineNodeDevice(env));
  data->domain = Napi::Persistent(DefineDomain(env));

  unsigned long version = 0;
  virGetVersion(&version, nullptr, nullptr);

  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("exitNow", Napi::Function::New(env, ExitNow, "exitNow"));
  exports.Set("constants", Constants(env));
  exports.Set("libvirtVersion", Napi::Number::New(env, static_cast<double>(version)));
  return exports;
}

}  // namespace
}  // namespace qh

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return qh::Init(env, exports); }

NODE_API_MODULE(qemu_hook_libvirt, InitModule)
