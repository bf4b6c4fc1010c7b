#pragma once

#include <napi.h>

#include "handles.h"

namespace qh {

// JavaScript classes of this addon, per environment (worker threads each load their own).
struct AddonData {
  Napi::FunctionReference connection;
  Napi::FunctionReference nodeDevice;
  Napi::FunctionReference domain;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Wrappers are built only from native code: their constructors take an External holding a
// borrowed pointer and add their own libvirt reference, so `handle` keeps (and later drops) its own.
Napi::Function DefineConnection(Napi::Env env);
Napi::Function DefineNodeDevice(Napi::Env env);
Napi::Function DefineDomain(Napi::Env env);
Napi::Object WrapConnection(Napi::Env env, const ConnectHandle& handle);
Napi::Object WrapNodeDevice(Napi::Env env, const NodeDeviceHandle& handle);
Napi::Object WrapDomain(Napi::Env env, const DomainHandle& handle);

}  // namespace qh
