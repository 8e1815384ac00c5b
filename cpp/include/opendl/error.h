// opendl::Error: the one exception type of the library, carrying HALCON's error code, the operator that
// failed and a message naming the offending parameter, key, shape or value. The library never exits or
// aborts; every failure becomes an Error that the Python layer maps to HOperatorError.
#pragma once

#include <stdexcept>
#include <string>

namespace opendl {

// HALCON error codes used by the library (subset of halcon/errors.py, spec section F.3).
namespace err {
constexpr int kWrongType1 = 1201, kWrongType2 = 1202, kWrongType3 = 1203;
constexpr int kWrongValue1 = 1301, kWrongValue2 = 1302, kWrongValue3 = 1303, kWrongValue4 = 1304;
constexpr int kWrongNumValues1 = 1401, kWrongNumValues2 = 1402, kWrongNumValues3 = 1403, kWrongNumValues4 = 1404;
constexpr int kInvalidHandle = 2450;
constexpr int kDictKey = 2894;
constexpr int kOutOfDeviceMem = 4104;
constexpr int kCudaNotAvailable = 4204;
constexpr int kFileNotFound = 5200;
constexpr int kHostMem = 6001;
constexpr int kTrainingFailed = 7720;
constexpr int kInvalidShape = 7735;
constexpr int kInvalidInputData = 7736;
constexpr int kInternal = 7779;
constexpr int kFileRead = 7780, kFileWrite = 7781, kWrongVersion = 7782;
constexpr int kInputsMissing = 7783;
constexpr int kInputWrongBatchSize = 7784;
constexpr int kInvalidName = 7785, kDuplicateName = 7786, kInvalidOutput = 7787;
constexpr int kParamNotAvailable = 7788;
constexpr int kInputWrongLength = 7789, kInputWrongType = 7790, kInputWrongValues = 7791;
constexpr int kWrongBatchSizeMultiplier = 7799;
constexpr int kInputWrongBatchSizeWithMultiplier = 7800;
constexpr int kSolverInvalidType = 7840;
constexpr int kUnsupportedGenParam = 7911;
constexpr int kUnsupportedGenValue = 7914;
}  // namespace err

class Error : public std::runtime_error {
 public:
  Error(int code, std::string op, std::string message)
      : std::runtime_error(op.empty() ? message : op + ": " + message),
        code_(code), operator_(std::move(op)), message_(std::move(message)) {}
  int code() const noexcept { return code_; }
  const std::string& op() const noexcept { return operator_; }
  const std::string& message() const noexcept { return message_; }

 private:
  int code_;
  std::string operator_;
  std::string message_;
};

// Throws Error(code, "", message); the operator name is filled in at the operator boundary.
[[noreturn]] void fail(int code, const std::string& message);

}  // namespace opendl
