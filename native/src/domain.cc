// Domain: a virDomainPtr. CLI only: in hook mode any call about the hooked domain hangs libvirt.
#include <cstdlib>
#include <string>

#include "addon.h"
#include "call.h"

namespace qh {
namespace {

class Domain : public Napi::ObjectWrap<Domain> {
 public:
  explicit Domain(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Domain>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "Domain objects come from a Connection");
    }
    dom_ = AddRef(info[0].As<Napi::External<virDomain>>().Data());
  }

  // The name is held by the local object: no call to the daemon.
  Napi::Value Name(const Napi::CallbackInfo& info) {
    const char* name = virDomainGetName(Held(info));
    return Napi::String::New(info.Env(), name != nullptr ? name : "");
  }

  // xmlDesc(flags): VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE for the persistent definition.
  Napi::Value XmlDesc(const Napi::CallbackInfo& info) {
    unsigned int flags = FlagsArg(info, 0);
    auto run = [d = AddRef(Held(info)), flags](std::string& out) {
      char* xml = virDomainGetXMLDesc(d.get(), flags);
      if (xml == nullptr) return Failed();
      out = xml;
      free(xml);
      return true;
    };
    auto done = [](Napi::Env env, std::string& s) -> Napi::Value { return Napi::String::New(env, s); };
    return StartCall<std::string>(info.Env(), "virDomainGetXMLDesc", std::move(run), done);
  }

  Napi::Value Create(const Napi::CallbackInfo& info) {
    auto run = [d = AddRef(Held(info))](bool&) { return Ok(virDomainCreate(d.get()) == 0); };
    auto done = [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); };
    return StartCall<bool>(info.Env(), "virDomainCreate", std::move(run), done);
  }

  Napi::Value IsActive(const Napi::CallbackInfo& info) {
    auto run = [d = AddRef(Held(info))](int& active) {
      active = virDomainIsActive(d.get());
      return Ok(active >= 0);
    };
    auto done = [](Napi::Env env, int& active) -> Napi::Value { return Napi::Boolean::New(env, active == 1); };
    return StartCall<int>(info.Env(), "virDomainIsActive", std::move(run), done);
  }

  // Drops this object's reference now, not at garbage collection (see NodeDevice::Free). Local.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    dom_.reset();
    return info.Env().Undefined();
  }

 private:
  virDomainPtr Held(const Napi::CallbackInfo& info) {
    if (!dom_) throw Napi::Error::New(info.Env(), "libvirt domain was freed");
    return dom_.get();
  }

  DomainHandle dom_;
};

}  // namespace

Napi::Function DefineDomain(Napi::Env env) {
  return Domain::DefineClass(env, "Domain",
                             {
                                 Domain::InstanceAccessor<&Domain::Name>("name"),
                                 Domain::InstanceMethod<&Domain::XmlDesc>("xmlDesc"),
                                 Domain::InstanceMethod<&Domain::Create>("create"),
                                 Domain::InstanceMethod<&Domain::IsActive>("isActive"),
                                 Domain::InstanceMethod<&Domain::Free>("free"),
                             });
}

Napi::Object WrapDomain(Napi::Env env, const DomainHandle& handle) {
  return Data(env).domain.New({Napi::External<virDomain>::New(env, handle.get())});
}

}  // namespace qh
