#include "call.h"

namespace qh {

namespace {
// What Failed() read for the Call running on this worker thread.
thread_local std::optional<CapturedError> pending;
}  // namespace

CapturedError CapturedError::FromThisThread() {
  CapturedError out;
  virErrorPtr err = virGetLastError();
  if (err == nullptr) return out;
  out.code = err->code;
  out.domain = err->domain;
  out.level = err->level;
  if (err->message != nullptr) out.message = err->message;
  return out;
}

bool Failed() {
  if (!pending) pending = CapturedError::FromThisThread();
  return false;
}

void BeginCall() {
  pending.reset();
  virResetLastError();
}

CapturedError TakeFailure(const char* function) {
  CapturedError out = pending ? std::move(*pending) : CapturedError::FromThisThread();
  pending.reset();
  virResetLastError();
  if (out.message.empty()) out.message = std::string(function) + " failed and libvirt gave no reason";
  return out;
}

Napi::Error LibvirtJsError(Napi::Env env, const CapturedError& error, const char* function) {
  Napi::Error js = Napi::Error::New(env, error.message);
  Napi::Object obj = js.Value();
  obj.Set("code", Napi::Number::New(env, error.code));
  obj.Set("domain", Napi::Number::New(env, error.domain));
  obj.Set("level", Napi::Number::New(env, error.level));
  obj.Set("function", Napi::String::New(env, function));
  return js;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

unsigned int FlagsArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  if (!info[index].IsNumber()) throw Napi::TypeError::New(info.Env(), "flags must be a number");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value < 0 || value > 4294967295.0 || value != static_cast<double>(static_cast<unsigned int>(value))) {
    throw Napi::TypeError::New(info.Env(), "flags must be an unsigned 32-bit integer");
  }
  return static_cast<unsigned int>(value);
}

}  // namespace qh
