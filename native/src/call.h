// Every libvirt call that may block (RPC to a daemon, sysfs work in the driver) runs on a libuv
// worker thread through Call, and JavaScript gets a Promise.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <napi.h>

#include <optional>
#include <string>
#include <utility>

namespace qh {

// libvirt's error for a failed call. libvirt keeps the last error per thread, so it must be
// copied on the worker thread that made the call, before that thread runs anything else.
struct CapturedError {
  int code = -1;
  int domain = 0;
  int level = 0;
  std::string message;

  // Empty message when libvirt has no error recorded for this thread.
  static CapturedError FromThisThread();
};

// Records the calling thread's libvirt error for the Call running on it and returns false. Use as
// `return Failed();` inside `run` wherever a local handle is still alive: every public libvirt
// function, virXxxFree included, clears the thread's last error, so the error must be read
// before those handles are released.
bool Failed();

// `return Ok(result != nullptr);` for the simple cases.
inline bool Ok(bool ok) { return ok ? true : Failed(); }

// Start and end of one Call on a worker thread: clear, then take what Failed() recorded (or the
// thread's last error when nothing was recorded).
void BeginCall();
CapturedError TakeFailure(const char* function);

// An Error carrying libvirt's code, domain and level, plus the C function that failed.
Napi::Error LibvirtJsError(Napi::Env env, const CapturedError& error, const char* function);

// `run(result)` runs on the worker thread and must not touch JavaScript; it returns false when
// libvirt failed. `done(env, result)` runs on the main thread and builds the resolved value.
// `run` is destroyed on the worker thread right after it returns, so the libvirt references it
// captured are dropped there too (dropping the last connection reference may talk to a daemon).
template <typename Result, typename Run, typename Done>
class Call : public Napi::AsyncWorker {
 public:
  Call(Napi::Env env, const char* function, Run run, Done done)
      : Napi::AsyncWorker(env, function),
        deferred_(Napi::Promise::Deferred::New(env)),
        function_(function),
        run_(std::move(run)),
        done_(std::move(done)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    BeginCall();
    bool ok = (*run_)(result_);
    if (!ok) error_ = TakeFailure(function_);
    run_.reset();
    if (!ok) SetError(error_.message);
  }

  void OnOK() override {
    try {
      deferred_.Resolve(done_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error&) override {
    deferred_.Reject(LibvirtJsError(Env(), error_, function_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  const char* function_;
  std::optional<Run> run_;
  Done done_;
  Result result_{};
  CapturedError error_;
};

// Queues a Call and returns its Promise. `function` names the libvirt entry point (a literal).
template <typename Result, typename Run, typename Done>
Napi::Promise StartCall(Napi::Env env, const char* function, Run run, Done done) {
  auto* call = new Call<Result, Run, Done>(env, function, std::move(run), std::move(done));
  Napi::Promise promise = call->Promise();
  call->Queue();  // the worker deletes itself once settled
  return promise;
}

// Argument checks shared by the wrappers; they throw a TypeError into JavaScript.
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what);
unsigned int FlagsArg(const Napi::CallbackInfo& info, size_t index);

}  // namespace qh
