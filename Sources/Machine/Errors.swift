/// Errors raised at the boundary with the C libraries. Each carries the library's own message.
public enum MachineError: Error, CustomStringConvertible, Equatable {
    /// An hwloc call failed; `errno` and its `strerror` text are attached.
    case hwloc(call: String, errno: Int32, message: String)
    /// A PAPI call failed; `code` is PAPI's return code and `message` is `PAPI_strerror(code)`.
    case papi(call: String, code: Int32, message: String)
    /// The request does not fit the machine (a PU that does not exist, an empty set).
    case invalidRequest(String)
    /// `LOWBIT_HIDE_ISA` names something that is not an ISA feature.
    case invalidISAMask(String)

    public var description: String {
        switch self {
        case let .hwloc(call, errno, message):
            return "hwloc: \(call) failed: \(message) (errno \(errno))"
        case let .papi(call, code, message):
            return "PAPI: \(call) failed: \(message) (code \(code))"
        case let .invalidRequest(message), let .invalidISAMask(message):
            return message
        }
    }
}
